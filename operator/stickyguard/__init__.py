"""stickyguard: keeps sticky sessions from concentrating failures on unlucky users."""

__version__ = "0.1.0"
