import pytest

from dpc_tf import search_space as ss
from dpc_tf.search_space import operators as ops


def test_there_are_81_operators_with_stable_indices():
  assert ss.NUM_OPERATORS == 81
  assert ss.ALL_OPERATORS[0] == ss.Conv1x1()
  assert ss.ALL_OPERATORS[1] == ss.SeparableConv3x3(1, 1)
  assert ss.ALL_OPERATORS[2] == ss.SeparableConv3x3(1, 3)
  assert ss.ALL_OPERATORS[64] == ss.SeparableConv3x3(21, 21)
  assert ss.ALL_OPERATORS[65] == ss.PyramidPooling(1, 1)
  assert ss.ALL_OPERATORS[80] == ss.PyramidPooling(8, 8)
  assert len(set(ss.ALL_OPERATORS)) == 81
  assert sum(isinstance(o, ss.SeparableConv3x3) for o in ss.ALL_OPERATORS) == 64
  assert sum(isinstance(o, ss.PyramidPooling) for o in ss.ALL_OPERATORS) == 16


@pytest.mark.parametrize("op", ss.ALL_OPERATORS, ids=lambda o: o.text)
def test_every_operator_round_trips_through_json_text_and_index(op):
  assert ops.operator_from_json(op.to_json()) == op
  assert ops.operator_from_text(op.text) == op
  assert ss.operator_from_index(op.index) == op


@pytest.mark.parametrize("obj, message", [
    ({"op": "conv", "kernel": 3, "rate": [5, 1]}, "rate r_h=5 is not in {1,3,6,9,12,15,18,21}"),
    ({"op": "conv", "kernel": 3, "rate": [1, 2]}, "rate r_w=2 is not in"),
    ({"op": "conv", "kernel": 5, "rate": [1, 1]}, "kernel 5 is not 1 or 3"),
    ({"op": "conv", "kernel": 3}, "a 3x3 conv needs 'rate'"),
    ({"op": "conv", "kernel": 1, "rate": [3, 3]}, "a 1x1 conv takes no rate"),
    ({"op": "pyramid_pooling", "grid_size": [3, 1]}, "grid g_h=3 is not in {1,2,4,8}"),
    ({"op": "pyramid_pooling"}, "needs 'grid_size'"),
    ({"op": "max_pool"}, "unknown op 'max_pool'"),
    ({"op": "conv", "kernel": 3, "rate": "1x1"}, "'rate' must be two integers"),
    ({"op": "conv", "kernel": 3, "rate": [1.0, 3]}, "'rate' must be two integers"),
])
def test_bad_operators_are_refused_with_a_clear_message(obj, message):
  with pytest.raises(ss.CellError, match=message.replace("{", r"\{").replace("}", r"\}")
                     .replace("(", r"\(").replace(")", r"\)")):
    ops.operator_from_json(obj)


def test_single_integer_rate_is_read_as_a_square_rate():
  assert ops.operator_from_json({"op": "conv", "kernel": 3, "rate": 6}) == ss.SeparableConv3x3(6, 6)


@pytest.mark.parametrize("text", ["conv3x3", "sep3x3@1", "pool@2x", "sep3x3@axb", ""])
def test_bad_operator_text_is_refused(text):
  with pytest.raises(ss.CellError, match="unknown operator"):
    ops.operator_from_text(text)


def test_operator_index_out_of_range():
  with pytest.raises(ss.CellError, match="operator index 81 is not in 0..80"):
    ss.operator_from_index(81)
