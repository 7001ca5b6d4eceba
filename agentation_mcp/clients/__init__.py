"""Clients of an agentation store: the local one the command line uses, the remote ones over HTTP, and watching.

They import the top level and the store, never the web or the agent side.
"""
