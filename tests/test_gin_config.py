"""The one gin parser: packaged configs, the include rule, one-line errors."""

import os

import gin
import pytest

from dpc_tf import gin_config
from dpc_tf.errors import DpcError


@gin.configurable("gin_config_probe")
def _probe(value=0, other=0):
  return value, other


MODULES = (__name__,)
pytestmark = pytest.mark.usefixtures("clean_gin")


def _write(path, text):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(text)
  return str(path)


def test_a_path_not_on_disk_is_looked_up_among_the_packaged_configs(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # an empty folder: no gin/ here
  shipped = os.path.join(gin_config.PACKAGED_ROOT, "search", "fake_demo.gin")
  assert gin_config.resolve_file("gin/search/fake_demo.gin") == shipped
  assert gin_config.resolve_file("search/fake_demo.gin") == shipped
  local = _write(tmp_path / "gin" / "search" / "fake_demo.gin", "")
  assert gin_config.resolve_file("gin/search/fake_demo.gin") == local  # disk wins
  with pytest.raises(DpcError, match=r"^gin file not found: gin/nope\.gin \(neither on disk"):
    gin_config.resolve_file("gin/nope.gin")
  with pytest.raises(DpcError, match="is a folder"):
    gin_config.resolve_file(str(tmp_path))


def test_includes_resolve_beside_the_including_file_then_the_packaged_root(tmp_path,
                                                                           monkeypatch):
  _write(tmp_path / "cfg" / "parts" / "value.gin", "gin_config_probe.value = 7\n")
  # A same-named file in the working folder must not be picked up: one rule, no cwd.
  monkeypatch.chdir(tmp_path)
  _write(tmp_path / "parts" / "other.gin", "gin_config_probe.other = 99\n")
  _write(tmp_path / "cfg" / "parts" / "other.gin", "include 'value.gin'\n"
                                                   "gin_config_probe.other = 3\n")
  main = _write(tmp_path / "cfg" / "main.gin", "include 'parts/other.gin'\n"
                                               "include 'train/synthetic.gin'\n")
  used = gin_config.parse([main], modules=MODULES + ("dpc_tf.training.config", "dpc_tf.models"))
  assert used == [main]
  assert _probe() == (7, 3)  # nested include beside its own includer; cwd's copy ignored
  assert gin.query_parameter("train.dataset") == "dpc_synthetic"  # from the packaged root


def test_a_missing_include_names_the_including_folder(tmp_path):
  main = _write(tmp_path / "main.gin", "include 'nowhere/x.gin'\n")
  with pytest.raises(DpcError, match=f"include 'nowhere/x.gin': no such config beside "
                                     f"{tmp_path} or in the packaged configs"):
    gin_config.parse([main], modules=MODULES)


@pytest.mark.parametrize("text, message", [
    ("gin_config_probe.valeu = 1", "Configurable 'gin_config_probe' doesn't have a parameter "
                                   "named 'valeu'"),
    ("no_such_thing.x = 1", "No configurable matching 'no_such_thing'"),
    ("gin_config_probe.value = ", "bad gin configuration"),
])
def test_bad_configs_are_one_line_errors(tmp_path, text, message):
  path = _write(tmp_path / "bad.gin", text + "\n")
  for files, bindings in (([path], []), ([], [text])):
    with pytest.raises(DpcError, match="bad gin configuration") as raised:
      gin_config.parse(files, bindings, modules=MODULES)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_non_utf8_config_is_refused(tmp_path):
  path = tmp_path / "latin1.gin"
  path.write_bytes(b"# caf\xe9\ngin_config_probe.value = 1\n")
  with pytest.raises(DpcError, match="is not UTF-8 text"):
    gin_config.parse([str(path)], modules=MODULES)


def test_parse_clears_earlier_bindings(tmp_path):
  gin_config.parse([], ["gin_config_probe.value = 5"], modules=MODULES)
  assert _probe() == (5, 0)
  gin_config.parse([], ["gin_config_probe.other = 1"], modules=MODULES)
  assert _probe() == (0, 1)
