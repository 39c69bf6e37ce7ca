"""openvla.eval"""
