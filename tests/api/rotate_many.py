"""Calls RotateSecret on rotor's KMS-compatible API with the official Alibaba Cloud KMS SDK for
Python, for every SECRET given, all at once (one thread each), over HTTPS with rotor's CA pinned.

    python rotate_many.py ENDPOINT CA_FILE KEY_ID KEY_SECRET SECRET [SECRET ...]

Prints one JSON line per call when it ends: {"secret", "ok", "code", "version"}; the code is the
KMS error code of a refused call. The key is a throwaway made by rotor's tests.
"""
import json
import sys
import threading

from alibabacloud_kms20160120 import models
from alibabacloud_kms20160120.client import Client
from alibabacloud_tea_openapi import utils_models
from darabonba.runtime import RuntimeOptions


def main():
    endpoint, ca, key_id, secret = sys.argv[1:5]
    names = sys.argv[5:]
    config = utils_models.Config(
        access_key_id=key_id,
        access_key_secret=secret,
        endpoint=endpoint,
        protocol="https",
        ca=ca,
    )
    lock = threading.Lock()

    def rotate(name):
        kms = Client(config)
        rt = RuntimeOptions(autoretry=False, ca=ca, read_timeout=120000, connect_timeout=10000)
        result = {"secret": name}
        try:
            body = kms.rotate_secret_with_options(
                models.RotateSecretRequest(secret_name=name), rt
            ).body
            result.update(ok=True, code=None, version=body.version_id)
        except Exception as e:  # the SDK raises its own exception type with .code
            result.update(ok=False, code=getattr(e, "code", None) or type(e).__name__, version=None)
        with lock:
            print(json.dumps(result), flush=True)

    threads = [threading.Thread(target=rotate, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


if __name__ == "__main__":
    main()
