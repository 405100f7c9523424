"""selfsup configs. Select with --config=configs/selfsup.py:<variant>; override with --config.a.b=v.

Variants (pretext tasks train on the unlabelled pool; finetune on the labelled set):
  mixup      unmix: which 2 of 3 candidate images were mixed, with Beta(5, 8) weights
  scale      which of 3 candidates was scaled by a weight in [0.3, 1] (or regress the weight)
  quadrant   which quadrant of an image a crop comes from (4-way)
  patchwork  does the pasted patch come from the same image (binary)
  simclr     two augmented views of each image, NT-Xent over the batch
  finetune   a classifier on the labelled set; --config.init_from=<pretext workdir> restores the
             encoder from that run (empty: a randomly initialised encoder, the baseline)
  smoke      a tiny mixup run that trains and evaluates in seconds

data.source='synthetic' (default) generates 10 classes of textured shapes in JAX with a small
labelled set and a large unlabelled pool; 'imagewang' reads TFDS imagewang (data.tfds_name) and,
if data.unsup_folder is set, the extracted unsup/ folder as the unlabelled pool.
"""
import ml_collections

from configs import common

PRETEXT = ('mixup', 'scale', 'quadrant', 'patchwork', 'simclr')
VARIANTS = PRETEXT + ('finetune', 'smoke')


def get_config(variant='mixup'):
  if variant not in VARIANTS:
    raise ValueError(f'unknown selfsup variant {variant!r}; allowed values are '
                     f'{", ".join(VARIANTS)}')
  c = ml_collections.ConfigDict()
  c.variant = variant
  c.task = 'mixup'           # a pretext task (PRETEXT) or 'classify'
  common.loop_fields(c, num_steps=3000, batch_size=128, eval_every=500, checkpoint_every=500,
                     early_stopping_mode='max', log_update_norm=True,
                     cpu_ynn_fusion_types=common.CONV_YNN_FUSION_TYPES)
  c.overfit_one_batch = False  # train on the batch of step 0 only, augmentation off: the first
                               # debugging step (a model that cannot overfit it has a bug)

  c.data = ml_collections.ConfigDict(dict(
      source='synthetic',  # 'synthetic' or 'imagewang'
      size=32,             # images are size x size (real ones: shortest side, centre crop)
      seed=0,              # the synthetic dataset's seed (the same data for every run seed)
      num_labelled=1000,   # synthetic labelled training images (100 per class)
      num_val=1000,        # synthetic validation images
      num_unlabelled=20000,  # synthetic unlabelled pool for the pretext tasks
      tfds_name='imagewang/160px',   # or 'imagewang/320px' (prepared as array_record)
      data_dir='',         # TFDS data_dir ('' = the default)
      unsup_folder='',     # imagewang: the extracted unsup/ folder (optional)
      num_images=0,        # imagewang: cap on images per split and on the pool (0 = all)
  ))
  c.augment = ml_collections.ConfigDict(dict(
      enabled=True,
      flip=True,
      crop_scale=(0.6, 1.0),     # random resized crop: area fraction range
      color_jitter=0.0,          # strength s of brightness/contrast/saturation jitter
      hue=0.0,                   # hue rotation, up to this fraction of a full turn either way
      grayscale=0.0,             # probability of a grey view
  ))
  c.pretext = ml_collections.ConfigDict(dict(
      num_candidates=3,    # mixup / scale: images the model chooses among
      num_mixed=2,         # mixup: sources mixed (stick-breaking Beta weights, summing to 1)
      beta=(5.0, 8.0),     # mixup: Beta(a, b) of the weights
      scale_range=(0.3, 1.0),   # scale: the weight's uniform range
      target='which',      # mixup / scale: 'which' (multi-label) or 'weights' (regression)
      candidate_views=False,    # mixup / scale: show other augmented views of the sources as
                                # the candidates (not the mixed pixels themselves)
      patch_size=12,       # patchwork: side of the pasted square patch, pixels
      positive_fraction=0.5,    # patchwork: share of patches from the same image
      temperature=0.2,     # simclr: NT-Xent temperature
  ))
  c.model = ml_collections.ConfigDict(dict(
      widths=(32, 64, 128),      # ResNet stages (stride 2 between stages)
      blocks=(1, 1, 1),          # residual blocks per stage
      stem_stride=2,       # 32 px images: stages at 16, 8, 4 px
      norm='group',        # 'group' (features independent of the batch) or 'batch'
      projection=(128, 64),      # siamese / simclr projection MLP: hidden..., output
  ))
  c.head = ml_collections.ConfigDict(dict(
      kind='mlp',          # siamese head (mixup / scale): 'dot', 'mlp' or 'cosine'
      hidden=(128,),       # MLP heads' hidden layers
      batch_norm=True,     # BatchNorm after each hidden layer of the MLP heads
      temperature=0.0,     # cosine head: logits = cos / temperature; 0 = 'auto' = sqrt(dim)
  ))
  c.loss = ml_collections.ConfigDict(dict(
      kind='auto',         # mixup / scale: 'bce', 'mse', 'margin' or 'auto' (bce for
                           # target 'which', mse for 'weights')
      margin=1.0,          # the margin contrastive loss's m (similar: a source)
  ))
  c.optim = ml_collections.ConfigDict(dict(lr=2e-3, warmup_steps=100, grad_clip=1.0,
                                           weight_decay=1e-4))
  c.finetune = ml_collections.ConfigDict(dict(
      init_from='',        # a pretext run's workdir: its newest checkpoint's encoder
      init_step=0,         # ... at this step (0 = the newest)
      mode='full',         # 'full' (train everything) or 'linear' (frozen encoder)
      hidden=(),           # classifier hidden layers (() = a linear head)
  ))
  c.eval = ml_collections.ConfigDict(dict(
      batch_size=250,
      knn_k=20,            # kNN on cosine similarity of encoder features, votes weighted
      knn_temperature=0.1,  # ... by exp(similarity / temperature)
      probe_steps=300,     # linear probe: full-batch Adam steps on frozen features
      probe_lr=0.05,
      probe_l2=1e-4,
      mistakes=16,         # images in the top-mistakes grid
  ))

  if variant in PRETEXT:
    c.task = variant
  if variant in ('mixup', 'scale'):
    c.batch_size = 64      # x (1 query + 3 candidates) = 256 images per step
  if variant == 'simclr':
    # Colour is a nuisance of the synthetic classes: hue rotation removes the shortcut of
    # matching two views by their colours (SimCLR's lesson on colour distortion).
    c.augment.update(dict(crop_scale=(0.2, 1.0), color_jitter=0.5, hue=0.5, grayscale=0.2))
  elif variant == 'finetune':
    c.task = 'classify'
    c.num_steps = 1500
    c.batch_size = 64
    c.eval_every = 250
    c.checkpoint.every = 500
    c.optim.update(dict(lr=1e-3, warmup_steps=50))
  elif variant == 'smoke':
    common.smoke_steps(c, num_steps=20, log_every=5, every=10)
    c.batch_size = 16
    c.data.update(dict(size=16, num_labelled=100, num_val=100, num_unlabelled=200))
    c.model.update(dict(widths=(8, 16), blocks=(1, 1), projection=(16, 8)))
    c.head.hidden = (16,)
    c.optim.warmup_steps = 5
    c.eval.update(dict(batch_size=50, knn_k=5, probe_steps=20, mistakes=4))
  return c
