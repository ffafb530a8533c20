"""Training pieces for the latent-diffusion autoencoder: its loss (reconstruction, perceptual, KL, patch GAN)."""
