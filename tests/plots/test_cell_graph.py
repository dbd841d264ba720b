import pytest

from dpc_tf import search_space as ss
from dpc_tf.errors import DpcError
from dpc_tf.plots import cell_graph


def test_layout_puts_every_node_somewhere_distinct():
  cell = ss.Cell.from_text("F:pool@2x4 F:conv1x1 1:sep3x3@3x21 2:pool@1x1 0:sep3x3@21x21")
  pos = cell_graph.layout(cell)
  assert set(pos) == {-1, 0, 1, 2, 3, 4, "concat", "projection"}
  assert len(set(pos.values())) == len(pos)
  assert cell_graph.node_label(cell.branches[2].op) == "3x3 sep conv\nrate 3x21"
  assert cell_graph.node_label(cell.branches[0].op) == "pyramid pooling\ngrid 2x4"


@pytest.mark.parametrize("extension, magic", [(".png", b"\x89PNG"), (".svg", b"<?xml")])
def test_render_writes_a_picture(tmp_path, extension, magic):
  path = str(tmp_path / ("cell" + extension))
  cell_graph.render_cell(ss.CITYSCAPES_CELL, path)
  with open(path, "rb") as f:
    assert f.read(5).startswith(magic)
  if extension == ".svg":
    text = open(path).read()
    assert "rate 18x15" in text or "18x15" in text


def test_render_refuses_other_formats(tmp_path):
  with pytest.raises(DpcError, match="must be .png or .svg"):
    cell_graph.render_cell(ss.CITYSCAPES_CELL, str(tmp_path / "cell.jpg"))


def test_command_line(tmp_path, commands):
  """The command draws the cell it is given, with the title it is given."""
  cell = ss.Cell.from_text("F:pool@2x4 0:sep3x3@3x21")
  cell_path, out = tmp_path / "cell.json", tmp_path / "c.svg"
  cell.save(str(cell_path))
  result = commands.run("dpc_tf.render_cell", f"--cell={cell_path}", f"--output={out}",
                        "--title=my cell", timeout=120)
  assert result.returncode == 0, result.stderr
  assert result.stdout.strip() == str(out)
  svg = out.read_text()
  assert "my cell" in svg and "grid 2x4" in svg and "rate 3x21" in svg
  assert "rate 18x15" not in svg  # not the released cell, the default
