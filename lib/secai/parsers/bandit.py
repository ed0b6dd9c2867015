"""(being written)"""
FORMATS = []
