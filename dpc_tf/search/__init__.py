"""Dense Prediction Cell architecture search: `python -m dpc_tf.search` (see __main__.py).

Pure Python at import (no TensorFlow, no Ray): the algorithm, the trial store, the
coordinator and the engines only move cells and score records; what scores a cell is a
pluggable, picklable trial function (the proxy task, or FakeTrial in tests).
"""

from dpc_tf.search.algorithm import History, Observation, RandomSearch, Suggestion, make_algorithm
from dpc_tf.search.coordinator import Coordinator
from dpc_tf.search.errors import SearchError
from dpc_tf.search.fake_trial import FakeTrial
from dpc_tf.search.pipeline import run_pipeline
from dpc_tf.search.store import Store, Trial
from dpc_tf.search.trial import TrialFn, WorkerPayload, validate_record
