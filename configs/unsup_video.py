"""unsup_video configs. Select with --config=configs/unsup_video.py:<variant>; override with --config.a.b=v.

Variants:
  composite_conditional  the paper's best model: reverse reconstruction + future prediction,
                         both conditional, flattened 64x64 frames, one 2048-unit LSTM layer (default)
  future                 the conditional future predictor alone
  autoencoder            the conditional reverse-order autoencoder alone
  conv                   composite conditional with a conv frame encoder / transposed-conv readout
  smoke                  a tiny composite conditional model that trains and evaluates in seconds

The switches the research log needed are fields: model.conditional (fed-back input vs none),
model.layers (1 or 2), model.output_activation + loss.kind + data.range (sigmoid + BCE on
(0, 1), linear or tanh + MSE on (0, 1) or (-1, 1)), optim.name (rmsprop, adam, momentum) with
optim.grad_clip, and model.dtype='bfloat16'.
"""
import ml_collections

from configs import common

VARIANTS = ('composite_conditional', 'future', 'autoencoder', 'conv', 'smoke')


def get_config(variant='composite_conditional'):
  if variant not in VARIANTS:
    raise ValueError(f'unknown unsup_video variant {variant!r}; allowed values are '
                     f'{", ".join(VARIANTS)}')
  c = ml_collections.ConfigDict()
  c.variant = variant
  # batch 80: the paper's; the update norm costs ~8% of a CPU step at 168M parameters
  common.loop_fields(c, num_steps=20000, batch_size=80, eval_every=1000, checkpoint_every=500,
                     early_stopping_mode='min', log_update_norm=False)

  c.data = ml_collections.ConfigDict(dict(
      digits='auto',       # 'mnist' (TFDS, prepared), 'embedded' (rendered here) or 'auto'
      data_dir='',         # TFDS data_dir for MNIST ('' = the default)
      num_digits=2,
      canvas=64,
      speed=0.1,           # of the free range (canvas - 28) per frame: 3.6 px at 64
      num_frames=20,
      num_input=10,        # frames the encoder reads; the rest are the future
      range='unit',        # 'unit': pixels in (0, 1); 'signed': in (-1, 1)
  ))
  c.model = ml_collections.ConfigDict(dict(
      kind='flat',         # 'flat' (pixels into the LSTM) or 'conv' (conv encoder + readout)
      mode='composite',    # 'composite', 'future' or 'autoencoder'
      conditional=True,    # feed each output step the previous frame (True) or nothing
      layers=1,
      hidden=2048,
      conv_channels=(32, 64, 64),
      init_scale=0.01,     # weights U(-s, s) as in the paper; 0 = Flax's LeCun normal
      forget_bias=1.0,
      output_activation='sigmoid',   # 'sigmoid', 'linear' or 'tanh'
      dtype='float32',     # 'bfloat16' runs the matmuls and convs in bf16 (params stay f32)
  ))
  c.loss = ml_collections.ConfigDict(dict(
      kind='bce',          # 'bce' (needs sigmoid, range unit) or 'mse'
      recon_weight=1.0,
      future_weight=1.0,
  ))
  c.optim = ml_collections.ConfigDict(dict(
      name='rmsprop',      # 'rmsprop', 'adam' or 'momentum' (SGD)
      lr=1e-3,
      grad_clip=25.0,      # global-norm clipping; 0 = off
      momentum=0.0,        # rmsprop: 0 = none; momentum: the coefficient
      decay=0.9,           # rmsprop's squared-gradient average
      eps=1e-6,            # optax's rmsprop adds it inside the square root
      weight_decay=0.0,
  ))
  c.eval = ml_collections.ConfigDict(dict(
      test_source='generated',   # 'generated' (fixed, from eval digits), 'npy' or 'tfds'
      test_path='',              # npy: mnist_test_seq.npy; tfds: the data_dir ('' = default)
      num_test=1000,             # sequences scored (the standard set has 10000)
      batch_size=100,
      examples=4,                # sequences drawn in the strip PNG
  ))

  if variant == 'future':
    c.model.mode = 'future'
  elif variant == 'autoencoder':
    c.model.mode = 'autoencoder'
  elif variant == 'conv':
    c.model.kind = 'conv'
    c.model.hidden = 1024
    c.model.init_scale = 0.0
    c.optim.name = 'adam'
    c.optim.lr = 1e-3
  elif variant == 'smoke':
    common.smoke_steps(c, num_steps=20, log_every=5, every=10)
    c.batch_size = 8
    c.data.update(dict(digits='embedded', canvas=32, num_frames=8, num_input=4))
    c.model.update(dict(hidden=64, init_scale=0.0))
    c.optim.update(dict(name='adam', lr=1e-3))
    c.eval.update(dict(num_test=16, batch_size=8, examples=2))
  return c
