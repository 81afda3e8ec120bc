"""aging: face aging in the latent space of a pretrained StyleGAN."""
__version__ = "0.1.0"
