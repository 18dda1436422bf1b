"""The tiny method the training-step and trainer notebooks test with (08bc, 08bd, 08c, 08d): a test fixture, kept beside the
notebooks and out of the library."""
import torch
from torch import nn

class TinyMethod(nn.Module):
    "Linear-BN-ReLU backbone, linear projector, InfoNCE over the views of each image; views = x + noise."
    recipe, n_views = 'none', 2
    def __init__(self, d_in=6, width=8, d=5, bn=True, temperature=0.5):
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(d_in, width), nn.BatchNorm1d(width) if bn else nn.Identity(), nn.Tanh())
        self.projector = nn.Linear(width, d)
        self.temperature = temperature
    def make_views(self, x, m, augment, generator):
        return x[:, None] + 0.3 * torch.randn(x.shape[0], m, x.shape[1], generator=generator, dtype=x.dtype, device=x.device)
    def target(self, views): return None
    def embed(self, views):
        B, v = views.shape[:2]
        return self.projector(self.backbone(views.flatten(0, 1))).view(B, v, -1)
    def loss(self, z, t=None):
        z = nn.functional.normalize(z, dim=-1)
        B, v = z.shape[:2]
        losses = []
        for i in range(v):
            for j in range(v):
                if i != j: losses.append(nn.functional.cross_entropy(z[:, i] @ z[:, j].T / self.temperature, torch.arange(B, device=z.device)))
        return torch.stack(losses).mean()
    def after_step(self, progress): pass
    def features(self, x): return self.backbone(x)
