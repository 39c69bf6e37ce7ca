"""openvla.sim"""
