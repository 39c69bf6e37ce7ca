"""openvla.model"""
