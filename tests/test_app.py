"""Every command runs through the one command layer: same flags, errors, exit codes."""

import ast
import concurrent.futures
import os

from dpc_tf.errors import EXIT_USER_ERROR, DpcError, one_line


def _console_scripts(root):
  """(script, module) pairs from setup.py's entry_points, read without running setup()."""
  tree = ast.parse(open(os.path.join(root, "setup.py")).read())
  pairs = next(n for n in ast.walk(tree) if isinstance(n, ast.Tuple) and len(n.elts) == 13)
  return [(ast.literal_eval(p.elts[0]), ast.literal_eval(p.elts[1])) for p in pairs.elts]


def test_every_command_is_a_console_script_and_refuses_a_bad_flag_in_one_line(commands):
  scripts = _console_scripts(commands.root)
  assert {name for name, _ in scripts} == {
      "train", "evaluate", "export", "predict", "cache_features", "proxy", "search",
      "model_stats", "render_cell", "convert_checkpoint", "benchmark", "reproduce", "inspect"}

  def refuse(module):
    return module, commands.run(f"dpc_tf.{module}".removesuffix(".__main__"),
                                "--no_such_flag=1", timeout=120)

  with concurrent.futures.ThreadPoolExecutor(4) as pool:
    for module, result in pool.map(refuse, [m for _, m in scripts]):
      prog = f"dpc_tf.{module}".removesuffix(".__main__")
      assert result.returncode == EXIT_USER_ERROR, (module, result.stderr[-2000:])
      assert commands.error_line(result) == (
          f"{prog}: error: Unknown command line flag 'no_such_flag'"), module


def test_missing_required_flag_and_stray_argument(commands):
  result = commands.run("dpc_tf.search", "--gin_file=gin/search/fake_demo.gin")
  assert result.returncode == EXIT_USER_ERROR
  assert commands.error_line(result) == "dpc_tf.search: error: --search_dir is required"
  result = commands.run("dpc_tf.export", "--model_dir=x", "--export_dir=y", "extra")
  assert commands.error_line(result).startswith("dpc_tf.export: error: unexpected arguments "
                                                "extra")


def test_packaged_configs_work_from_an_empty_folder(commands, tmp_path):
  empty = tmp_path / "empty"
  empty.mkdir()
  result = commands.run("dpc_tf.search", "--gin_file=gin/search/fake_demo.gin",
                        f"--search_dir={tmp_path / 's'}", "--budget=4",
                        "--gin_bindings=search_pipeline.rerank_top_k = 0", cwd=str(empty))
  assert result.returncode == 0, result.stderr[-2000:]
  assert "not on disk, using the packaged config" in result.stderr
  assert "search finished: 4 done, 0 failed" in result.stdout


def test_one_line():
  assert one_line(DpcError("first\n  second")) == "first"
  assert one_line(DpcError("a   b\tc")) == "a b c"
  assert one_line(ValueError()) == "ValueError"
  traced = RuntimeError("in user code:\n\n  File x\n  bad shape [3] vs [4]")
  assert one_line(traced) == "RuntimeError while tracing: bad shape [3] vs [4]"
