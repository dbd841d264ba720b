"""`python -m dpc_tf.cache_features`: run a frozen backbone once, cache its features.

    python -m dpc_tf.cache_features --gin_file=gin/proxy/synthetic.gin --cache_dir=DIR \
        [--gin_bindings='feature_cache.train_views = 2'] [--roles=train,eval]

Streams the configured dataset splits through the backbone (weights from
`feature_cache.checkpoint`, or pretrained on the way with `feature_cache.pretrain`) into a
sharded float16 cache with DIR/manifest.json. Interrupted runs resume at the next unfinished
shard; a finished cache is reused; a cache made with other settings is refused with one line
saying what differs. The design (augmented views, label resolution) is documented in
dpc_tf/proxy/cache_builder.py. Prints a one-line JSON summary at the end.
"""

import sys

from absl import app, flags

flags.DEFINE_multi_string("gin_file", [], "Gin config file(s), e.g. gin/proxy/synthetic.gin.")
flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings, e.g. 'feature_cache.shard_size=32'.")
flags.DEFINE_string("cache_dir", None, "Folder of the feature cache (created if missing).")
flags.DEFINE_list("roles", ["train", "eval"], "Which roles to cache: train (the training "
                  "split, augmented views) and/or eval (the validation split).")
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  from dpc_tf.proxy.cli import cache_main  # pylint: disable=import-outside-toplevel
  sys.exit(cache_main(FLAGS.gin_file, FLAGS.gin_bindings, FLAGS.cache_dir, FLAGS.roles))


if __name__ == "__main__":
  app.run(main)
