"""uploaderd: pushes container image layers to Amazon ECR, fast and in bounded memory."""

__version__ = "0.1.0"
