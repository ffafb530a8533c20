"""Latent diffusion's autoencoder side: loading an autoencoder by what the user types (`load`), latent spaces
and datasets encoded once and cached (`latents`), and the autoencoder's training loss (`loss`)."""
