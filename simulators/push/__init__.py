"""The simulated push provider (FCM HTTP v1 shape); see ``server``."""
