"""The worker's web endpoints: metrics, health, feedback and the live dashboard."""
