"""ldm-diagnostics: pre-deployment triage for latent-diffusion models.

The library owns the truth (probes -> rules -> findings -> report); pytest (`checks/`) and the CLI
(`python -m diagnostics`) are two front-ends over it. Importing this package imports no ML library.
"""

__version__ = "0.1.0"
