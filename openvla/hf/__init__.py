"""openvla.hf"""
