import json
import re

import pytest

from dpc_tf import search_space as ss
from dpc_tf.search_space import Branch, Cell

RELEASED_JSON = ('[{"kernel": 3, "rate": [1, 6], "op": "conv", "input": -1}, '
                 '{"kernel": 3, "rate": [18, 15], "op": "conv", "input": 0}, '
                 '{"kernel": 3, "rate": [6, 3], "op": "conv", "input": 1}, '
                 '{"kernel": 3, "rate": [1, 1], "op": "conv", "input": 0}, '
                 '{"kernel": 3, "rate": [6, 21], "op": "conv", "input": 0}]')


def test_released_cell_matches_the_paper_table():
  cell = ss.CITYSCAPES_CELL
  assert [b.input for b in cell] == [-1, 0, 1, 0, 0]
  assert [b.op.rate for b in cell] == [(1, 6), (18, 15), (6, 3), (1, 1), (6, 21)]


def test_released_file_is_read_and_written_byte_for_byte():
  with open(ss.released_cell_path()) as f:
    text = f.read()
  assert text.strip() == RELEASED_JSON
  assert Cell.from_json(RELEASED_JSON).to_json_string() == RELEASED_JSON


def test_save_and_load_round_trip(tmp_path):
  cell = Cell.from_text("F:pool@2x4 F:conv1x1 1:sep3x3@3x21 2:pool@1x1 0:sep3x3@21x21")
  path = tmp_path / "sub" / "cell.json"
  cell.save(str(path))
  assert Cell.load(str(path)) == cell
  data = json.loads(path.read_text())
  assert data[0] == {"grid_size": [2, 4], "op": "pyramid_pooling", "input": -1}
  assert data[1] == {"kernel": 1, "op": "conv", "input": -1}
  assert [p.name for p in path.parent.iterdir()] == ["cell.json"]  # no temporary left


def test_text_round_trip():
  text = "F:sep3x3@1x6 0:sep3x3@18x15 1:sep3x3@6x3 0:sep3x3@1x1 0:sep3x3@6x21"
  assert ss.CITYSCAPES_CELL.text == text
  assert Cell.from_text(text) == ss.CITYSCAPES_CELL
  assert str(Cell.from_text(text)) == text


@pytest.mark.parametrize("data, message", [
    ([], "the cell is empty"),
    ({"op": "conv"}, "a cell must be a JSON list"),
    ("not json", "cell is not valid JSON"),
    ([{"kernel": 1, "op": "conv", "input": 0}], "branch 0: input 0 refers to the branch itself"),
    ([{"kernel": 1, "op": "conv", "input": -1}, {"kernel": 1, "op": "conv", "input": 2}],
     "branch 1: input 2 is a forward reference (allowed: -1 (the features) or an earlier "
     "branch 0..0)"),
    ([{"kernel": 1, "op": "conv", "input": -2}], "branch 0: input -2 is out of range"),
    ([{"kernel": 1, "op": "conv", "input": "0"}], "branch 0: input must be an integer"),
    ([{"kernel": 1, "op": "conv", "input": True}], "branch 0: input must be an integer"),
    ([{"kernel": 1, "op": "conv"}], "branch 0: missing 'input'"),
    ([{"kernel": 1, "op": "conv", "input": -1, "stride": 2}], "branch 0: unknown key(s) stride"),
    ([{"kernel": 1, "op": "conv", "input": -1}, 3], "branch 1: expected a JSON object"),
    ([{"kernel": 1, "op": "conv", "input": -1}, {"kernel": 1, "op": "conv", "input": 0},
      {"kernel": 1, "op": "conv", "input": 0}, {"kernel": 3, "rate": [5, 1], "op": "conv",
                                                "input": 0}],
     "branch 3: rate r_h=5 is not in {1,3,6,9,12,15,18,21}"),
    ([{"kernel": 2, "op": "conv", "input": -1}], "branch 0: kernel 2 is not 1 or 3"),
    ([{"op": "avg", "input": -1}], "branch 0: unknown op 'avg'"),
    ([{"grid_size": [2, 16], "op": "pyramid_pooling", "input": -1}],
     "branch 0: grid g_w=16 is not in {1,2,4,8}"),
])
def test_validation_names_the_branch_and_the_problem(data, message):
  with pytest.raises(ss.CellError, match=re.escape(message)):
    Cell.from_json(data)


def test_direct_construction_is_validated():
  with pytest.raises(ss.CellError, match="branch 1: input 1 refers to the branch itself"):
    Cell((Branch(-1, ss.Conv1x1()), Branch(1, ss.Conv1x1())))
  with pytest.raises(ss.CellError, match="branch 0: unknown operator"):
    Cell((Branch(-1, "conv"),))
  with pytest.raises(ss.CellError, match="the cell is empty"):
    Cell(())


def test_load_names_the_file(tmp_path):
  path = tmp_path / "bad.json"
  path.write_text('[{"kernel": 3, "rate": [1, 7], "op": "conv", "input": -1}]')
  with pytest.raises(ss.CellError, match=r"bad.json: branch 0: rate r_w=7"):
    Cell.load(str(path))
  with pytest.raises(ss.CellError, match="cannot read cell file"):
    Cell.load(str(tmp_path / "missing.json"))


@pytest.mark.parametrize("text, message", [
    ("", "the cell is empty"),
    ("F-conv1x1", "branch 0: 'F-conv1x1' is not INPUT:OP"),
    ("X:conv1x1", "branch 0: input 'X' is not F or a branch number"),
    ("F:conv1x1 0:conv5x5", "branch 1: unknown operator 'conv5x5'"),
    ("F:conv1x1 3:conv1x1", "branch 1: input 3 is a forward reference"),
])
def test_text_validation(text, message):
  with pytest.raises(ss.CellError, match=re.escape(message)):
    Cell.from_text(text)


def test_equivalent_orderings_share_canonical_form_and_fingerprint():
  a = Cell.from_text("F:conv1x1 F:pool@2x2 0:sep3x3@3x3 1:sep3x3@6x6")
  # Same tree, independent branches listed in another order.
  b = Cell.from_text("F:pool@2x2 F:conv1x1 0:sep3x3@6x6 1:sep3x3@3x3")
  c = Cell.from_text("F:pool@2x2 0:sep3x3@6x6 F:conv1x1 2:sep3x3@3x3")
  assert a != b
  assert a.canonical() == b.canonical() == c.canonical()
  assert a.fingerprint() == b.fingerprint() == c.fingerprint()
  assert a.canonical().canonical() == a.canonical()
  assert re.fullmatch(r"[0-9a-f]{16}", a.fingerprint())


def test_different_cells_have_different_fingerprints():
  a = Cell.from_text("F:conv1x1 0:sep3x3@3x3")
  b = Cell.from_text("F:conv1x1 F:sep3x3@3x3")  # same ops, other wiring
  c = Cell.from_text("F:sep3x3@3x3 0:conv1x1")  # swapped ops along the chain
  assert len({a.fingerprint(), b.fingerprint(), c.fingerprint()}) == 3


def test_fingerprint_is_stable_across_releases():
  # Stored in search databases: a change here orphans every stored search.
  assert ss.CITYSCAPES_CELL.fingerprint() == "5b0459310c24e3f9"


def test_as_cell_accepts_every_form():
  cell = Cell.from_text("F:pool@2x4 F:conv1x1 1:sep3x3@3x21")
  assert ss.as_cell(cell) is cell
  assert ss.as_cell(cell.text) == cell
  assert ss.as_cell(cell.to_json()) == cell
  assert ss.as_cell(tuple(cell.to_json())) == cell
  assert ss.as_cell("  " + cell.to_json_string()) == cell
  with pytest.raises(ss.CellError, match="branch 0: unknown operator 'pool@3x3x'"):
    ss.as_cell("F:pool@3x3x")
  with pytest.raises(ss.CellError, match="cell is not valid JSON"):
    ss.as_cell("[{")


@pytest.mark.parametrize("text, message", [
    ('[{"kernel": true, "op": "conv", "input": -1}]',
     "branch 0: kernel must be the integer 1 or 3, got True"),
    ('[{"kernel": 3.0, "rate": [1, 1], "op": "conv", "input": -1}]',
     "branch 0: kernel must be the integer 1 or 3, got 3.0"),
    ('[{"kernel": 1, "op": "conv", "input": -1}, {"grid_size": [1, 1], "rate": [1, 1], '
     '"op": "pyramid_pooling", "input": 0}]', "branch 1: pyramid_pooling takes no 'rate'"),
    ('[{"kernel": 3, "rate": [1, 1], "grid_size": [2, 2], "op": "conv", "input": -1}]',
     "branch 0: conv takes no 'grid_size'"),
    ('[{"kernel": 3, "rate": [1, 1], "op": "conv", "input": -1, "input": 0}]',
     "branch 0: duplicated key(s) input"),
    ('[{"kernel": 1, "op": 7, "input": -1}]', "branch 0: unknown op 7"),
])
def test_strict_cells(tmp_path, text, message):
  with pytest.raises(ss.CellError) as info:
    ss.Cell.from_json(text)
  assert str(info.value) == message or str(info.value).startswith(message), str(info.value)


@pytest.mark.parametrize("data, message", [
    (b"\xff[]", "not UTF-8 text"),
    (b"[" * 50000 + b"]" * 50000, "nested too deeply"),
])
def test_unreadable_cell_files_are_one_line(tmp_path, data, message):
  path = tmp_path / "c.json"
  path.write_bytes(data)
  with pytest.raises(ss.CellError, match=message):
    ss.Cell.load(str(path))
