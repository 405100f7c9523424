"""SPS configs. Select with --config=configs/sps.py:<variant>; override any field with --config.a.b=v.

Variants: bouncing_ball, two_body (the headline job), no_symmetry (bouncing ball without the
symmetry paths: the baseline), music (synthesised melodies, 1-D pitch z with T(1)), smoke
(trains and evaluates in well under a minute on a CPU).
Defaults follow the research log's best findings: batch 16, a width-32 Elman prior, MSE
losses with scaled weights, gradient clipping at 1, rnn_min_context 4; plus the measured escape
from the mean-frame plateau for images (a decoder that starts at the mean frame with its last
transposed conv at zero, a low-noise posterior, a 1000-step warm-up of the prediction terms).
"""
import ml_collections

from configs import common

VARIANTS = ('bouncing_ball', 'bouncing_ball_cpu', 'two_body', 'two_body_cpu', 'no_symmetry', 'music',
            'smoke')


def get_config(variant='two_body'):
  if variant not in VARIANTS:
    raise ValueError(f'unknown sps variant {variant!r}; allowed values are {", ".join(VARIANTS)}')
  c = ml_collections.ConfigDict()
  c.variant = variant
  common.loop_fields(c, num_steps=20000, batch_size=16, eval_every=1000, checkpoint_every=1000,
                     early_stopping_mode='min',
                     cpu_ynn_fusion_types=common.CONV_YNN_FUSION_TYPES)
  c.num_seeds = 1                  # random inits trained at once (vmapped in one jitted step)
  c.init_from = ''                 # workdir of a run whose newest params start this one

  c.data = ml_collections.ConfigDict(dict(
      scene='bouncing_ball',   # 'bouncing_ball' or 'two_body' (generated), ignored if path is set
      path='',                 # a folder in the released bouncing-ball layout, instead of generating
      num_train=512,           # training sequences
      num_eval=128,            # held-out sequences for evaluation
      num_frames=20,
      reverse_prob=0.0,        # play a training sequence backwards with this probability
      num_timbres=64,          # music: timbres of the training (and of the held-out) set
  ))
  c.model = ml_collections.ConfigDict(dict(
      z_dim=3,
      vae=True,                # False: a plain autoencoder (z = mu, no KL)
      enc_channels=(64, 128, 256),
      dec_hidden=(16, 32, 64),
      dec_channels=(256, 128, 64),
      dec_last_relu=False,     # ReLU after the decoder's last Dense (64 -> 4096); the release has none
      enc_leak=0.0,            # negative slope of the encoder's activations (0: ReLU, the paper's)
      dec_leak=0.0,            # ... and of the decoder's hidden activations
      dec_zero_last=True,      # with dec_mean_init: the last transposed conv starts at zero
      mu_data_init=False,      # scale the mu head so mu has mean 0, std 1 over training frames
      dec_mean_init=True,      # a per-pixel output bias that starts at the training mean frame
      logvar_init=-6.0,        # bias of the logvar head at init: -6 starts the posterior std at 0.05
      prior_width=32,
      prior_depth=1,
      prior_cell='rnn',        # 'rnn' (Elman, tanh) or 'gru'
      prior_dropout=0.0,       # dropout on the hidden state fed back into the prior's cells
      prior_init='default',    # 'identity' / 'negative_identity': start at z[t+1] = +-z[t]
      prior_init_noise=0.01,   # ... plus this much noise
      arch='conv',             # 'conv' for 32x32 frames, 'mlp' for spectrograms
      mlp_hidden=(512, 128),   # mlp encoder widths (the decoder mirrors them)
  ))
  c.loss = ml_collections.ConfigDict(dict(
      kind='mse',              # 'mse' (mean) or 'bce' (mean binary cross-entropy)
      self_recon=1.31072,
      image_pred=2.62144,
      z_pred=6e-3,
      kl=3.2e-7,
      rnn_min_context=4,       # frames always teacher-forced (and, unless score_all, not scored)
      score_all=False,         # score all T-1 one-step predictions, the forced ones too (release)
      srs=0.0,                 # consistency g^-1 prior(g z) ~ prior(z) (the release's SRS), weight
      pred_decoder_grad=True,  # False: image predictions train the prior and encoder, not the decoder
      warmup_prior_first=False,  # the warm-up ramps only what the prediction terms send into
                               # the encoder and decoder; the prior learns at full weight from step 0
      pred_warmup=1000,        # steps over which image_pred, z_pred and srs ramp up from 0
      z_stop_grad_target=True,   # no gradient from the z loss into the encoded target
      z_stop_grad_input=False,   # nor from the prior into the encoder through its input
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
  # lr_decay: the lr is multiplied by this every step (the release: 0.99999; 1 = constant);
  # warmup_steps: the lr first rises linearly from 0 over this many steps (0 = off)
  c.optim = ml_collections.ConfigDict(dict(lr=1e-3, lr_decay=1.0, warmup_steps=0, grad_clip=1.0,
                                           weight_decay=0.0))
  c.eval = ml_collections.ConfigDict(dict(
      batch_size=64, rollout_examples=4, traversal_steps=9,
      success_threshold=0.03,  # a seed succeeds when its linear projection MSE is below this
  ))
  # A seed whose eval self-recon is still above max_ratio x the loss of drawing the mean frame
  # at step >= check_step is reported as collapsed (the log: it never recovers).
  c.collapse = ml_collections.ConfigDict(dict(check_step=2000, max_ratio=0.5))

  if variant == 'two_body':
    c.data.scene = 'two_body'
    c.data.num_frames = 25
    c.model.z_dim = 6
    c.symmetry.spec = 'T:0,1,2|3,4,5 R:0,1,2|3,4,5'
  elif variant in ('bouncing_ball_cpu', 'two_body_cpu'):
    cpu_sized(c, two_body=variant == 'two_body_cpu')
  elif variant == 'no_symmetry':
    c.symmetry.k = 0
  elif variant == 'music':
    c.data.scene = 'music'
    c.data.num_frames = 15          # notes of a melody; each frame is one note's 4x513 spectrum
    c.model.z_dim = 1
    c.model.arch = 'mlp'
    c.model.dec_mean_init = False   # the mlp decoder's last Dense has a per-output bias already
    c.model.logvar_init = 0.0
    c.loss.pred_warmup = 0
    c.loss.kind = 'mse_linear'
    c.loss.self_recon, c.loss.image_pred = 1.0, 2.0
    c.loss.z_pred, c.loss.kl = 6e-3, 1e-4
    c.loss.rnn_min_context = 4
    c.symmetry.spec = 'T:0'
    c.num_steps = 5000
    # A 1-D z cannot carry the timbre: working seeds keep ~60-80% of the mean-frame loss.
    c.collapse.max_ratio = 0.9
  elif variant == 'smoke':
    common.smoke_steps(c, num_steps=30, log_every=10, every=15)
    c.loss.pred_warmup = 0     # 30 steps: a warm-up would make the logged loss rise
    c.batch_size = 4
    c.data.num_train = 16
    c.data.num_eval = 8
    c.data.num_frames = 8
    c.model.enc_channels = (8, 16, 32)
    c.model.dec_channels = (32, 16, 8)
    c.eval.batch_size = 8
    c.eval.rollout_examples = 2
    c.eval.traversal_steps = 5
  return c


def cpu_sized(c, two_body=False):
  """8 seeds of a quarter-width model on shorter sequences, sized for a 2-core CPU."""
  c.num_seeds = 8
  c.batch_size = 8
  c.data.num_frames = 12
  c.model.enc_channels = (8, 16, 32)
  c.model.dec_channels = (32, 16, 8)
  # Measured on 8 seeds (README): a linear teacher-forcing schedule over 3000 steps pulled the
  # seeds that had drawn the ball back towards the mean frame once it fell below ~0.7; the
  # released sigmoid schedule (p ~0.96 over these steps) keeps them drawing it.
  c.model.dec_leak = 0.1
  # With symmetry the prediction terms (two paths, added) pulled 3 of 8 seeds onto the mean
  # frame by step 250; letting the prior learn at full weight from step 0 while the ramp holds
  # back only what reaches the encoder and decoder left 7 of 8 drawing the ball at step 1000.
  c.loss.warmup_prior_first = True
  c.num_steps = 6000
  c.eval_every = 250
  c.checkpoint.every = 500
  if two_body:
    c.data.scene = 'two_body'
    c.model.z_dim = 6
    c.symmetry.spec = 'T:0,1,2|3,4,5 R:0,1,2|3,4,5'
