"""openvla.actions"""
