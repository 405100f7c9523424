"""VRNN configs. Select with --config=configs/vrnn.py:<variant>; override with --config.a.b=v.

Variants:
  handwriting  generated handwriting, bivariate GMM (k=20) + pen bit (the default)
  gauss        the same with a diagonal Gaussian output (VRNN-Gauss)
  vrnn_i       handwriting with the N(0, I) prior (VRNN-I)
  rnn_gmm      the baseline without latent variables (RNN-GMM)
  iam          IAM-OnDB lineStrokes at the paper's sizes (needs data.path)
  npz          your own (N, T, D) sequences from a .npz/.npy file, Gaussian output (needs data.path)
  mnist_rows   MNIST as 28 rows of 28 bits, Bernoulli output (needs MNIST prepared in TFDS)
  smoke        a tiny handwriting model that trains and evaluates in seconds
"""
import ml_collections

from configs import common

VARIANTS = ('handwriting', 'gauss', 'vrnn_i', 'rnn_gmm', 'iam', 'npz', 'mnist_rows', 'smoke')


def get_config(variant='handwriting'):
  if variant not in VARIANTS:
    raise ValueError(f'unknown vrnn variant {variant!r}; allowed values are {", ".join(VARIANTS)}')
  c = ml_collections.ConfigDict()
  c.variant = variant
  # 4000 steps: ~40 min on a 2-core CPU; samples are legible by then
  common.loop_fields(c, num_steps=4000, batch_size=32, eval_every=500, checkpoint_every=500,
                     early_stopping_mode='max', conv_impl=False,
                     cpu_fusion_emitters=False)   # its compiler peak 1.6x -> 1.1x PyTorch's, ~4% slower

  c.data = ml_collections.ConfigDict(dict(
      source='synthetic',    # 'synthetic' (generated), 'iam' (lineStrokes XML), 'npz' (a file of
                             # (N, T, D) sequences, see vrnn/arrays.py) or 'mnist_rows' (TFDS)
      seed=0,                # generated data: the lines drawn (apart from `seed`, so seeds share a held-out set)
      path='',               # iam: the IAM-OnDB folder; npz: the file; mnist_rows: TFDS data_dir
      normalise=True,        # npz: standardise every feature by the train split's mean and std
      train_list='',         # iam: split files of form ids (e.g. trainset.txt); '' = last lines held out
      eval_list='',
      num_train=4096,        # sequences (generated, or the first n read)
      num_eval=256,          # npz, and iam without eval_list: the file's last sequences are held out
      max_len=256,           # points per sequence: longer ones are cut, shorter ones padded + masked
  ))
  c.model = ml_collections.ConfigDict(dict(
      cell='lstm',           # 'lstm' or 'gru'
      h_dim=256,
      phi_x_dim=64,
      phi_z_dim=64,
      hidden_dim=256,        # width of the prior / encoder / decoder MLPs
      layers=1,              # hidden layers per MLP
      z_dim=16,
      prior='learned',       # 'learned' p(z_t|h_{t-1}) or 'standard' N(0, I) (VRNN-I)
      latent=True,           # False: RNN baseline without z
      output='gmm',          # 'gmm' (bivariate mixture), 'gauss' (diagonal) or 'bernoulli'
      num_mixtures=20,
      pen_bit=True,          # the last feature is a Bernoulli pen-up bit (stroke data)
      min_scale=1e-2,        # floor added to every softplus scale (data are normalised)
  ))
  c.loss = ml_collections.ConfigDict(dict(
      kl_warmup=0,           # steps over which the KL weight rises linearly from 0 to 1; 0 = off
      free_bits=0.02,        # nats per latent dimension per step that cost nothing (Kingma et al.
                             # 2016); 0 = off. 0.02 keeps all 16 latents in use (README)
  ))
  c.optim = ml_collections.ConfigDict(dict(lr=1e-3, grad_clip=10.0, weight_decay=0.0))
  c.eval = ml_collections.ConfigDict(dict(
      batch_size=128,
      is_samples=64,         # importance samples for the log-likelihood estimate
      num_generate=8,        # sampled sequences drawn in the figures
      generate_len=0,        # steps per sample; 0 = the held-out sequences' length (data.max_len at most)
      temperature=1.0,       # scale on the prior's sigma when sampling
      examples=4,            # reconstructions drawn
      data_units=False,      # report log-densities in the data's units, not the normalised ones
  ))

  if variant == 'gauss':
    c.model.output = 'gauss'
  elif variant == 'vrnn_i':
    c.model.prior = 'standard'
  elif variant == 'rnn_gmm':
    c.model.latent = False
  elif variant == 'iam':
    c.data.source = 'iam'
    c.data.max_len = 300
    c.batch_size = 20
    c.optim.lr = 3e-4
    c.model.update(dict(h_dim=1200, phi_x_dim=250, phi_z_dim=150, hidden_dim=250, z_dim=50))
  elif variant == 'npz':
    c.data.source = 'npz'
    c.model.update(dict(output='gauss', pen_bit=False))
    c.eval.data_units = True
  elif variant == 'mnist_rows':
    c.data.source = 'mnist_rows'
    c.data.num_train = 60000
    c.data.num_eval = 10000
    c.data.max_len = 28
    c.batch_size = 128
    c.model.update(dict(output='bernoulli', pen_bit=False, h_dim=100, z_dim=16,
                        phi_x_dim=100, phi_z_dim=100, hidden_dim=100))
  elif variant == 'smoke':
    common.smoke_steps(c, num_steps=30, log_every=10, every=15)
    c.batch_size = 8
    c.data.num_train = 32
    c.data.num_eval = 16
    c.data.max_len = 64
    c.model.update(dict(h_dim=32, phi_x_dim=16, phi_z_dim=16, hidden_dim=32, z_dim=4,
                        num_mixtures=3))
    c.eval.update(dict(batch_size=16, is_samples=8, num_generate=2, examples=2))
  return c
