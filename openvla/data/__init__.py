"""openvla.data"""
