"""Keep SuprSend user profiles in step with your Django models."""

__version__ = "0.1.0.dev0"
