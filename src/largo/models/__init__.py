"""Networks: the LARGO U-Net (`unet`), the KL autoencoder of latent diffusion (`autoencoder`) and a pretrained
diffusers VAE behind the same interface (`diffusers_vae`)."""

from largo.models.unet import UNet, build_unet, count_parameters

__all__ = ["UNet", "build_unet", "count_parameters"]
