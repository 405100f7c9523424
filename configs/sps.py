"""SPS configs. Select with --config=configs/sps.py:<variant>; override any field with --config.a.b=v.

Variants: bouncing_ball, two_body (the headline job), no_symmetry (bouncing ball without the
symmetry paths: the baseline), smoke (trains and evaluates in well under a minute on a CPU).
Defaults follow the research log's best findings: batch 16, a width-32 Elman prior, MSE
losses with scaled weights, gradient clipping at 1, rnn_min_context 4.
"""
import ml_collections

VARIANTS = ('bouncing_ball', 'two_body', 'no_symmetry', 'smoke')


def get_config(variant='two_body'):
  if variant not in VARIANTS:
    raise ValueError(f'unknown sps variant {variant!r}; allowed values are {", ".join(VARIANTS)}')
  c = ml_collections.ConfigDict()
  c.variant = variant
  c.seed = 0
  c.num_steps = 20000
  c.batch_size = 16
  c.log_every = 50
  c.eval_every = 1000
  c.eval_at_end = True
  c.progress_bar = True
  c.conv_impl = 'auto'             # 'auto' (matmul on CPU, lax.conv on GPU/TPU), 'matmul', 'lax'
  c.checkpoint = ml_collections.ConfigDict(dict(every=1000, max_to_keep=3))
  c.early_stopping = ml_collections.ConfigDict(
      dict(metric='', mode='min', patience=5, min_delta=0.0))   # metric '' = off

  c.data = ml_collections.ConfigDict(dict(
      scene='bouncing_ball',   # 'bouncing_ball' or 'two_body' (generated), ignored if path is set
      path='',                 # a folder in the released bouncing-ball layout, instead of generating
      num_train=512,           # training sequences
      num_eval=128,            # held-out sequences for evaluation
      num_frames=20,
  ))
  c.model = ml_collections.ConfigDict(dict(
      z_dim=3,
      vae=True,                # False: a plain autoencoder (z = mu, no KL)
      enc_channels=(64, 128, 256),
      dec_hidden=(16, 32, 64),
      dec_channels=(256, 128, 64),
      prior_width=32,
      prior_depth=1,
      prior_cell='rnn',        # 'rnn' (Elman, tanh) or 'gru'
  ))
  c.loss = ml_collections.ConfigDict(dict(
      kind='mse',              # 'mse' (mean) or 'bce' (mean binary cross-entropy)
      self_recon=1.31072,
      image_pred=2.62144,
      z_pred=6e-3,
      kl=3.2e-7,
      rnn_min_context=4,       # frames given before predictions are scored
  ))
  c.schedule = ml_collections.ConfigDict(dict(
      kind='sigmoid',          # teacher forcing: 'sigmoid' (released), 'linear' or 'none'
      duration=30000,          # steps for the linear schedule to reach 0
  ))
  c.symmetry = ml_collections.ConfigDict(dict(
      spec='T:0,2 R:0,2',      # groups and the z dims they act on (see sps/symmetry.py)
      mode='sample',           # 'sample' one group per example, 'compose' all, 'each' a path per group
      k=1,                     # augmentation ratio: batch/k sequences get k transforms each; 0 = off
      p_identity=0.1,
      trans_dist='normal',     # 'normal' N(0, s^2) or 'uniform' U(-s, s)
      trans_scale=1.0,
  ))
  c.optim = ml_collections.ConfigDict(dict(lr=1e-3, grad_clip=1.0, weight_decay=0.0))
  c.eval = ml_collections.ConfigDict(dict(batch_size=64, rollout_examples=4, traversal_steps=9))

  if variant == 'two_body':
    c.data.scene = 'two_body'
    c.data.num_frames = 25
    c.model.z_dim = 6
    c.symmetry.spec = 'T:0,1,2|3,4,5 R:0,1,2|3,4,5'
  elif variant == 'no_symmetry':
    c.symmetry.k = 0
  elif variant == 'smoke':
    c.num_steps = 30
    c.batch_size = 4
    c.log_every = 10
    c.eval_every = 15
    c.checkpoint.every = 15
    c.data.num_train = 16
    c.data.num_eval = 8
    c.data.num_frames = 8
    c.model.enc_channels = (8, 16, 32)
    c.model.dec_channels = (32, 16, 8)
    c.eval.batch_size = 8
    c.eval.rollout_examples = 2
    c.eval.traversal_steps = 5
  return c
