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

import json

from absl import flags

from dpc_tf import app

app.define_gin_flags()
flags.DEFINE_string("cache_dir", None, "Folder of the feature cache (created if missing).")
flags.DEFINE_list("roles", ["train", "eval"], "Which roles to cache: train (the training "
                  "split, augmented views) and/or eval (the validation split).")
FLAGS = flags.FLAGS


def main() -> None:
  # pylint: disable=import-outside-toplevel
  from dpc_tf.proxy import config
  from dpc_tf.proxy.cache_builder import make_cache
  from dpc_tf.utils.files import writable_dir
  cache_dir = writable_dir(app.required("cache_dir"), "cache_dir")
  app.parse_gin(config.MODULES)
  cache_config, pretrain_config, _ = config.configured()
  manifest = make_cache(cache_dir, cache_config, pretrain_config, tuple(FLAGS.roles))
  summary = {"cache_dir": cache_dir, **{k: manifest["identity"][k] for k in (
      "backbone", "checkpoint_fingerprint", "dataset", "output_stride")}}
  for role in FLAGS.roles:
    entry = manifest["roles"][role]
    summary[role] = {"count": entry["count"], "shards": len(entry["shards"]),
                     "feature_shape": entry["feature_shape"], "label_shape": entry["label_shape"]}
  print(json.dumps(summary))


run = app.command("dpc_tf.cache_features", main,
                  on_interrupt="finished shards are kept, run the same command to resume")

if __name__ == "__main__":
  run()
