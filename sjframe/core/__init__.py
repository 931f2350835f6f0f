"""What every part of sjframe may use: typed configs, run directories, CLI errors, runtime helpers.

Imports nothing of sjframe above it.
"""
