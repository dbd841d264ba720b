"""`python -m dpc_tf.search`: bad configs end with one line and status 2, never a traceback."""

import os

import pytest

from dpc_tf.errors import EXIT_USER_ERROR

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAKE = os.path.join(ROOT, "gin", "search", "fake_demo.gin")
QUICK = ["--gin_bindings=search_pipeline.rerank_top_k = 0",
         "--gin_bindings=search_pipeline.plots = False"]


def _assert_one_line_error(result, *fragments):
  assert result.returncode == EXIT_USER_ERROR, (result.returncode, result.stderr[-2000:])
  assert "Traceback" not in result.stderr
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith("dpc_tf.search: error: "), result.stderr[-2000:]
  for fragment in fragments:
    assert fragment in last, last


@pytest.mark.parametrize("extra, fragments", [
    (["--budget=0"], ["budget", ">= 1", "got 0"]),
    (["--engine=spark"], ["unknown engine 'spark'", "local, ray"]),
    (["--gin_bindings=search_algorithm.p_uniform = 2.0"], ["p_uniform must be in [0, 1]"]),
    (["--gin_bindings=search_pipeline.trial_factory = @proxy_task",
      "--gin_bindings=search_cache.cache_dir = '/nonexistent/cache'",
      "--gin_bindings=search_cache.build = False"],
     ["feature cache /nonexistent/cache is missing"]),
    (["--gin_bindings=search_backbone.checkpoint = '/nonexistent/ckpt'"],
     ["backbone checkpoint /nonexistent/ckpt does not exist"]),
    (["--gin_bindings=search_algorithm.no_such_setting = 1"], ["bad gin config"]),
    (["--gin_bindings=rerank_trial.num_stpes = 1"],
     ["bad gin config", "'rerank_trial' doesn't have a parameter named 'num_stpes'"]),
    (["--gin_bindings=search_algorithm.seed = '1'"], ["search_algorithm.seed = '1' is not an int"]),
    (["--gin_bindings=search_pipeline.rerank_top_k = 2"], ["rerank_factory"]),
])
def test_bad_configs(tmp_path, cli, extra, fragments):
  args = [f"--gin_file={FAKE}", f"--search_dir={tmp_path}", "--budget=2", *extra]
  if extra[0] == "--gin_bindings=search_pipeline.rerank_top_k = 2":
    args += ["--gin_bindings=search_pipeline.rerank_factory = None"]
  _assert_one_line_error(cli(args), *fragments)


def test_missing_gin_file_and_search_dir(tmp_path, cli):
  _assert_one_line_error(cli([f"--gin_file={tmp_path}/nope.gin", f"--search_dir={tmp_path}"]),
                         f"gin file not found: {tmp_path}/nope.gin")
  _assert_one_line_error(cli([f"--gin_file={FAKE}"]), "--search_dir is required")


def test_search_dir_of_a_different_config_is_refused(tmp_path, cli):
  first = cli([f"--gin_file={FAKE}", f"--search_dir={tmp_path}", "--budget=3", *QUICK])
  assert first.returncode == 0, first.stderr[-2000:]
  # a larger budget and another worker count are the same search: it resumes
  more = cli([f"--gin_file={FAKE}", f"--search_dir={tmp_path}", "--budget=5", "--workers=1",
              *QUICK])
  assert more.returncode == 0, more.stderr[-2000:]
  assert "search finished: 5 done, 0 failed" in more.stdout
  other = cli([f"--gin_file={FAKE}", f"--search_dir={tmp_path}", "--budget=5", *QUICK,
               "--gin_bindings=search_algorithm.seed = 1"])
  _assert_one_line_error(other, "was made by a different config",
                         "search_algorithm.seed = 0 -> search_algorithm.seed = 1")
