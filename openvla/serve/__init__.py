"""openvla.serve"""
