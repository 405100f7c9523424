"""vle configs. Select with --config=configs/vle.py:<variant>; override with --config.a.b=v.

Variants:
  vanilla    residual tokens, mask = 1 (default)
  saliency   a small residual head with its own memory emits each token's mask
  inherent   the decoder emits each token's mask as a fourth channel
  smoke      a tiny saliency model on 32x32 scenes that trains and evaluates in seconds

Every variant also trains the baseline, a conv VAE with the same parameter count (baseline.scale
= 0 picks its width), on the same batches with its own optimizer; evaluation applies it to
residuals token by token like the VLE. data.source='tfds' (data.tfds_name) or 'folder'
(data.folder) trains on real images; ARI needs the synthetic scenes' true masks.
"""
import ml_collections

from configs import common

VARIANTS = ('vanilla', 'saliency', 'inherent', 'smoke')


def get_config(variant='vanilla'):
  if variant not in VARIANTS:
    raise ValueError(f'unknown vle variant {variant!r}; allowed values are {", ".join(VARIANTS)}')
  c = ml_collections.ConfigDict()
  c.variant = variant
  common.loop_fields(c, num_steps=20000, batch_size=32, eval_every=1000, checkpoint_every=1000,
                     early_stopping_mode='min', log_update_norm=True,
                     cpu_ynn_fusion_types=common.CONV_YNN_FUSION_TYPES)

  c.data = ml_collections.ConfigDict(dict(
      source='scenes',     # 'scenes' (generated, with true masks), 'tfds' or 'folder'
      size=64,             # images are size x size (real ones resized and centre-cropped)
      min_objects=2,
      max_objects=6,
      shapes=('circle', 'square', 'triangle', 'diamond', 'ring'),
      background='mixed',  # 'plain', 'textured' or 'mixed' (half each)
      radius=(0.1, 0.22),  # object size range, in fractions of the image side
      tfds_name='',        # e.g. 'cifar10', 'imagenette/160px' (prepared as array_record)
      tfds_split='train',
      tfds_eval_split='test',
      data_dir='',         # TFDS data_dir ('' = the default)
      folder='',           # a folder of images: every 10th file is held out for evaluation
      num_images=0,        # real images kept for training (0 = all)
  ))
  c.model = ml_collections.ConfigDict(dict(
      kind='vanilla',      # 'vanilla', 'saliency' or 'inherent'
      channels=(32, 64, 64),           # encoder k4 s2 convs: tokens at 1/8 resolution
      memory=32,           # ConvLSTM features after the first conv (0 = no memory)
      token_channels=4,
      decoder_channels=(64, 64, 32),
      saliency_features=16,
      saliency_memory=True,
      norm_eps=0.01,       # residuals are divided by (their std + norm_eps)
  ))
  c.tokens = ml_collections.ConfigDict(dict(
      train_max=6,         # static length of the token scan in training
      mean_start=2.0,      # mean sampled token count at step 0 ...
      mean_end=5.0,        # ... growing linearly to this
      ramp_steps=10000,    # ... over this many steps (steps, not a fraction of num_steps, so
                           # that extending a run with a larger num_steps resumes it exactly)
  ))
  c.loss = ml_collections.ConfigDict(dict(
      final_weight=0.5,    # e: e * final MSE + (1 - e) * mean MSE after each token; e <= 0.5
      mask_sharpness=5.0,  # exp(-sharpness * MSE) in the mask losses
      mask_binary=0.01,    # weights of the mask losses (vle/losses.py)
      mask_empty=0.01,
      mask_previous=0.01,
      mask_accumulated=0.01,
  ))
  c.optim = ml_collections.ConfigDict(dict(lr=1e-3, grad_clip=0.1, weight_decay=0.0))
  c.baseline = ml_collections.ConfigDict(dict(
      enabled=True,
      scale=0.0,           # channel multiplier of the VAE; 0 = match the VLE's parameter count
      kl_weight=1e-3,      # loss = pixel MSE + kl_weight * KL / (pixels * channels)
  ))
  c.eval = ml_collections.ConfigDict(dict(
      num_test=256,
      batch_size=64,
      tokens=12,           # tokens per image at evaluation
      mse_threshold=0.003,  # tokens needed to reach this MSE (pixels in [0, 1])
      ari_tokens=6,        # tokens whose masks are scored against the true objects
      examples=4,          # images drawn in the token and mask grids
  ))

  if variant == 'saliency':
    c.model.kind = 'saliency'
  elif variant == 'inherent':
    c.model.kind = 'inherent'
  elif variant == 'smoke':
    common.smoke_steps(c, num_steps=20, log_every=5, every=10)
    c.batch_size = 8
    c.data.size = 32
    c.model.update(dict(kind='saliency', channels=(8, 16, 16), memory=8,
                        decoder_channels=(16, 16, 8), saliency_features=8))
    c.tokens.update(dict(train_max=3, mean_start=1.5, mean_end=2.5, ramp_steps=10))
    c.eval.update(dict(num_test=16, batch_size=8, tokens=4, ari_tokens=3, examples=2))
  return c
