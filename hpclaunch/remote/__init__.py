"""Where commands run: the local machine or a login node over SSH, and tunnels to endpoints.

Knows nothing of plans or vLLM: a transport runs argv lists, reads files and probes ports.
"""
