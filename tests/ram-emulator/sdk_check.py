"""Drives ram-emulator with the official Alibaba Cloud RAM SDK for Python
(alibabacloud-ram20150501), in both signature styles: V3 (ACS3-HMAC-SHA256, the SDK's default)
and V2 in the SDK's naming (the RPC HMAC-SHA1 signature, which rotor calls v1).

    python sdk_check.py ENDPOINT ADMIN_ID ADMIN_SECRET

Prints one line per check and exits non-zero at the first one that fails. The secrets come
from rotor's tests (throwaway values for a loopback emulator).
"""
import sys

from alibabacloud_ram20150501 import models
from alibabacloud_ram20150501.client import Client
from alibabacloud_tea_openapi import utils_models
from darabonba.runtime import RuntimeOptions


def client(endpoint, key_id, secret, algorithm):
    config = utils_models.Config(
        access_key_id=key_id,
        access_key_secret=secret,
        endpoint=endpoint,
        protocol="http",
    )
    if algorithm == "v2":
        config.signature_algorithm = "v2"
    return Client(config)


def refused(call, code):
    try:
        call()
    except Exception as e:  # the SDK raises its own exception types with .code
        got = getattr(e, "code", None)
        if got != code:
            sys.exit(f"FAIL: expected {code}, got {got}: {e}")
        return
    sys.exit(f"FAIL: expected {code}, the call succeeded")


def main():
    endpoint, admin_id, admin_secret = sys.argv[1:4]
    runtime = RuntimeOptions(autoretry=False)
    for algorithm in ["v3", "v2"]:
        admin = client(endpoint, admin_id, admin_secret, algorithm)
        user = f"sdk-{algorithm}"
        created = admin.create_user_with_options(models.CreateUserRequest(user_name=user), runtime)
        assert created.body.user.user_name == user, created.body
        print(f"{algorithm}: CreateUser ok")
        key = admin.create_access_key_with_options(models.CreateAccessKeyRequest(user_name=user), runtime).body.access_key
        assert key.status == "Active" and key.access_key_id.startswith("LTAI"), key
        print(f"{algorithm}: CreateAccessKey ok")
        listed = admin.list_access_keys_with_options(models.ListAccessKeysRequest(user_name=user), runtime)
        ids = [k.access_key_id for k in listed.body.access_keys.access_key]
        assert ids == [key.access_key_id], ids
        print(f"{algorithm}: ListAccessKeys ok")
        # The new key signs for itself: GetUser on its own user.
        own = client(endpoint, key.access_key_id, key.access_key_secret, algorithm)
        got = own.get_user_with_options(models.GetUserRequest(user_name=user), runtime)
        assert got.body.user.user_name == user
        print(f"{algorithm}: GetUser with the new key ok")
        admin.update_access_key_with_options(
            models.UpdateAccessKeyRequest(user_name=user, user_access_key_id=key.access_key_id, status="Inactive"), runtime)
        print(f"{algorithm}: UpdateAccessKey ok")
        refused(lambda: own.get_user_with_options(models.GetUserRequest(user_name=user), runtime),
                "InvalidAccessKeyId.Inactive")
        print(f"{algorithm}: an Inactive key is refused")
        admin.delete_access_key_with_options(
            models.DeleteAccessKeyRequest(user_name=user, user_access_key_id=key.access_key_id), runtime)
        listed = admin.list_access_keys_with_options(models.ListAccessKeysRequest(user_name=user), runtime)
        assert listed.body.access_keys.access_key == [], listed.body
        print(f"{algorithm}: DeleteAccessKey ok")
        wrong = client(endpoint, admin_id, admin_secret + "x", algorithm)
        refused(lambda: wrong.get_user_with_options(models.GetUserRequest(user_name=user), runtime),
                "SignatureDoesNotMatch")
        print(f"{algorithm}: a wrong AccessKey secret is refused")
        refused(lambda: admin.get_user_with_options(models.GetUserRequest(user_name="nobody"), runtime),
                "EntityNotExist.User")
        print(f"{algorithm}: errors come back in the cloud's shape")
    print("ok")


if __name__ == "__main__":
    main()
