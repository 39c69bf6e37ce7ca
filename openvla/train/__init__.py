"""openvla.train"""
