"""Endpoints in evaluations: files ``vf-eval`` reads (exports) and ``vf-eval`` runs by name."""
