"""Shipyard's Python model worker: loads one MLflow model and answers predictions.

Started by Shipyard as `python -I -u -c <this file> MODEL_DIR`, with a connected Unix socket as
its standard input. Everything crosses that socket as frames, `u32 length (little-endian) | u8
kind | body`, where length counts the kind byte and the body; standard output and standard
error are only logs (user code prints there), never data.

Worker -> Shipyard: HELLO (json: pid, python, the installed versions of the model's pinned
packages); Shipyard answers LOAD (or SHUTDOWN when the versions make unpickling unsafe); then READY (json: what the model is) or ERROR (json: message, traceback) and exit.
Then one request at a time: PREDICT (json header + Arrow IPC stream) -> TABLE (Arrow IPC stream)
or JSON (a value that is not a table) or FAILED (json); INVOKE (json header + raw body of an
MLflow /invocations request) -> INVOKED (json header + raw answer, from MLflow's own scoring
function); PING -> PONG; SHUTDOWN -> exit. End of file on the socket (Shipyard is gone) -> exit.
"""

import json
import os
import signal
import socket
import struct
import sys
import traceback
import warnings

HELLO, READY, ERROR, PREDICT, TABLE, JSON, FAILED, INVOKE, INVOKED, PING, PONG, SHUTDOWN, LOAD = range(1, 14)


def die_with_parent():
    """Linux: the kernel kills this worker if Shipyard dies while it is busy in a prediction."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def recv_exact(sock, n):
    chunks = []
    while n:
        chunk = sock.recv(min(n, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_frame(sock):
    (length,) = struct.unpack("<I", recv_exact(sock, 4))
    if length == 0:
        raise EOFError
    payload = recv_exact(sock, length)
    return payload[0], payload[1:]


def send_frame(sock, kind, *parts):
    length = 1 + sum(len(p) for p in parts)
    sock.sendall(struct.pack("<IB", length, kind) + b"".join(parts))


def send_json(sock, kind, value):
    send_frame(sock, kind, json.dumps(value, default=str).encode())


def split_header(body):
    (n,) = struct.unpack("<I", body[:4])
    return json.loads(body[4 : 4 + n]), body[4 + n :]


def with_header(header, data):
    encoded = json.dumps(header).encode()
    return struct.pack("<I", len(encoded)) + encoded, data


def pinned_requirements(model_dir):
    """`name==version` lines of the model's requirements.txt, as {name: version}."""
    pins = {}
    try:
        with open(os.path.join(model_dir, "requirements.txt"), encoding="utf-8") as f:
            for line in f:
                line = line.split("#", 1)[0].strip()
                if "==" in line and not line.startswith("-"):
                    name, _, version = line.partition("==")
                    name = name.split("[", 1)[0].strip()
                    pins[name] = version.split(";", 1)[0].strip()
    except OSError:
        pass
    return pins


def installed_versions(names):
    from importlib import metadata

    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def describe(model):
    """What Shipyard needs to know of the loaded model to read requests and answers."""
    meta = model.metadata
    info = {
        "loader_module": meta.flavors.get("python_function", {}).get("loader_module"),
        "has_signature": meta.signature is not None,
        "classes": None,
        "feature_names": None,
        "n_features": None,
    }
    raw = None
    try:
        raw = model.get_raw_model()
    except Exception:
        pass
    if raw is not None:
        classes = getattr(raw, "classes_", None)
        if classes is not None and getattr(classes, "ndim", 1) == 1:
            info["classes"] = [c.item() if hasattr(c, "item") else c for c in classes]
        names = getattr(raw, "feature_names_in_", None)
        if names is not None:
            info["feature_names"] = [str(n) for n in names]
        n = getattr(raw, "n_features_in_", None)
        if n is not None:
            info["n_features"] = int(n)
    return info


def to_table(predictions):
    """A prediction as an Arrow table, or None when it is not tabular."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    if isinstance(predictions, pd.DataFrame):
        frame = predictions.copy()
        frame.columns = [str(c) for c in frame.columns]
        return pa.Table.from_pandas(frame, preserve_index=False)
    if isinstance(predictions, pd.Series):
        return pa.table({"predictions": pa.array(predictions.to_numpy())})
    if isinstance(predictions, list):
        try:
            predictions = np.asarray(predictions)
        except Exception:
            return None
    if isinstance(predictions, np.ndarray):
        if predictions.ndim == 1 and predictions.dtype != object:
            return pa.table({"predictions": pa.array(predictions)})
        if predictions.ndim == 1:
            try:
                return pa.table({"predictions": pa.array(predictions.tolist())})
            except Exception:
                return None
        if predictions.ndim == 2 and predictions.dtype != object:
            return pa.table({str(j): pa.array(predictions[:, j]) for j in range(predictions.shape[1])})
    return None


def ipc_bytes(table):
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def predict(sock, model, body):
    import pyarrow as pa

    header, data = split_header(body)
    frame = pa.ipc.open_stream(data).read_all().to_pandas()
    if header.get("positional"):
        frame = frame.to_numpy()
    params = header.get("params")
    try:
        predictions = model.predict(frame, params=params) if params else model.predict(frame)
    except Exception as e:
        send_json(sock, FAILED, {"message": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(), "client": True})
        return
    table = to_table(predictions)
    if table is not None:
        send_frame(sock, TABLE, ipc_bytes(table))
        return
    from mlflow.pyfunc.scoring_server import _get_jsonable_obj
    from mlflow.utils.proto_json_utils import NumpyEncoder

    send_frame(sock, JSON, json.dumps(_get_jsonable_obj(predictions, pandas_orient="records"), cls=NumpyEncoder).encode())


def invoke(sock, model, input_schema, body):
    """An /invocations request through MLflow's own scoring function: its parsing, its errors."""
    from mlflow.exceptions import MlflowException

    try:
        from mlflow.pyfunc import scoring_server
    except ImportError as e:
        message = (
            f"MLflow's scoring server cannot be imported in the worker's environment ({e}); "
            "/invocations runs MLflow's own scoring function: install the package it names "
            "(mlflow 2.x needs flask), or use /predict or /v2"
        )
        send_json(sock, FAILED, {"message": message, "client": False})
        return

    header, data = split_header(body)
    try:
        answer = scoring_server.invocations(data, header.get("content_type") or "", model, input_schema)
        status, mimetype, response = answer.status, answer.mimetype, answer.response
    except MlflowException as e:
        status, mimetype, response = e.get_http_status_code(), "application/json", e.serialize_as_json()
    except Exception:
        # What MLflow's server (FastAPI) answers for an error its handler does not catch.
        traceback.print_exc()
        status, mimetype, response = 500, "text/plain; charset=utf-8", "Internal Server Error"
    if isinstance(response, str):
        response = response.encode()
    send_frame(sock, INVOKED, *with_header({"status": status, "mimetype": mimetype}, response))


def main():
    model_dir = sys.argv[1]
    strict = os.environ.get("SHIPYARD_ALLOW_VERSION_MISMATCH") != "1"
    die_with_parent()
    sock = socket.socket(fileno=os.dup(0))
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    # Whatever the model prints goes to the log.
    sys.stdout = sys.stderr
    pins = pinned_requirements(model_dir)
    send_json(
        sock,
        HELLO,
        {
            "pid": os.getpid(),
            "python": ".".join(str(p) for p in sys.version_info[:3]),
            "executable": sys.executable,
            "packages": installed_versions(sorted(pins)),
        },
    )
    # Shipyard judges the versions before any unpickling runs: LOAD, or SHUTDOWN.
    kind, _ = read_frame(sock)
    if kind != LOAD:
        return
    try:
        if strict:
            try:
                from sklearn.exceptions import InconsistentVersionWarning

                warnings.simplefilter("error", InconsistentVersionWarning)
            except ImportError:
                pass
        import mlflow.pyfunc

        model = mlflow.pyfunc.load_model(model_dir)
        input_schema = model.metadata.get_input_schema()
        info = describe(model)
    except BaseException as e:
        send_json(sock, ERROR, {"message": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()})
        return
    send_json(sock, READY, info)
    os.environ["MLFLOW_IS_IN_SERVING_ENVIRONMENT"] = "true"
    while True:
        try:
            kind, body = read_frame(sock)
        except (EOFError, ConnectionError):
            return
        if kind == SHUTDOWN:
            return
        try:
            if kind == PREDICT:
                predict(sock, model, body)
            elif kind == INVOKE:
                invoke(sock, model, input_schema, body)
            elif kind == PING:
                send_frame(sock, PONG)
            else:
                send_json(sock, FAILED, {"message": f"unknown request kind {kind}", "client": False})
        except (EOFError, ConnectionError):
            return
        except Exception as e:
            send_json(sock, FAILED, {"message": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(), "client": False})


if __name__ == "__main__":
    main()
