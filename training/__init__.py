"""Training pipeline for DAP: data, losses, training loop, data engine."""
