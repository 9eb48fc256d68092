"""Drives rotor's KMS-compatible API with the official Alibaba Cloud KMS SDK for Python
(alibabacloud-kms20160120 with alibabacloud-tea-openapi), over HTTPS with rotor's CA pinned,
in one signature style: v3 (ACS3-HMAC-SHA256, the SDK's default) or v2 (the RPC HMAC-SHA1
signature).

    python sdk_check.py ENDPOINT CA_FILE KEY_ID KEY_SECRET NARROW_ID NARROW_SECRET ALGORITHM ROTATE_SECRET

NARROW_* is a key allowed only GetSecretValue on other/*. ROTATE_SECRET is a dual-account
database secret to rotate. Prints one line per check, then `ROTATED <SecretData>` with the
rotated secret's new value, and exits non-zero at the first check that fails. The keys are
throwaway values made by rotor's tests.
"""
import json
import sys

from alibabacloud_kms20160120 import models
from alibabacloud_kms20160120.client import Client
from alibabacloud_tea_openapi import utils_models
from darabonba.runtime import RuntimeOptions


def client(endpoint, ca, key_id, secret, algorithm):
    config = utils_models.Config(
        access_key_id=key_id,
        access_key_secret=secret,
        endpoint=endpoint,
        protocol="https",
        ca=ca,
    )
    if algorithm == "v2":
        config.signature_algorithm = "v2"
    return Client(config)


def refused(call, code):
    try:
        call()
    except Exception as e:  # the SDK raises its own exception type with .code
        got = getattr(e, "code", None)
        if got != code:
            sys.exit(f"FAIL: expected {code}, got {got}: {e}")
        return
    sys.exit(f"FAIL: expected {code}, the call succeeded")


def main():
    endpoint, ca, key_id, secret, narrow_id, narrow_secret, algorithm, rotate = sys.argv[1:9]
    rt = RuntimeOptions(autoretry=False, ca=ca)
    kms = client(endpoint, ca, key_id, secret, algorithm)
    p = f"sdk-{algorithm}"

    created = kms.create_secret_with_options(models.CreateSecretRequest(
        secret_name=f"{p}/one", secret_data="first value", version_id="v1",
        secret_data_type="text", description="made by the SDK",
        tags=json.dumps([{"TagKey": "team", "TagValue": "platform"}]),
    ), rt).body
    assert created.secret_name == f"{p}/one" and created.version_id == "v1", created
    assert created.arn.endswith(f"secret/{p}/one"), created.arn
    print(f"{algorithm}: CreateSecret ok")

    got = kms.get_secret_value_with_options(models.GetSecretValueRequest(secret_name=f"{p}/one"), rt).body
    assert got.secret_data == "first value" and got.secret_data_type == "text", got
    assert got.version_stages.version_stage == ["ACSCurrent"], got.version_stages
    assert got.create_time.endswith("Z"), got.create_time
    print(f"{algorithm}: GetSecretValue ok")

    put = kms.put_secret_value_with_options(models.PutSecretValueRequest(
        secret_name=f"{p}/one", version_id="v2", secret_data="second value"), rt).body
    assert put.version_id == "v2" and put.version_stages.version_stage == ["ACSCurrent"], put
    cur = kms.get_secret_value_with_options(models.GetSecretValueRequest(
        secret_name=f"{p}/one", version_stage="ACSCurrent"), rt).body
    prev = kms.get_secret_value_with_options(models.GetSecretValueRequest(
        secret_name=f"{p}/one", version_stage="ACSPrevious"), rt).body
    by_id = kms.get_secret_value_with_options(models.GetSecretValueRequest(
        secret_name=f"{p}/one", version_id="v1"), rt).body
    assert cur.secret_data == "second value" and prev.secret_data == "first value", (cur, prev)
    assert by_id.secret_data == "first value" and by_id.version_stages.version_stage == ["ACSPrevious"]
    print(f"{algorithm}: PutSecretValue, GetSecretValue by stage and by version id ok")

    for i in range(3):
        kms.create_secret_with_options(models.CreateSecretRequest(
            secret_name=f"{p}/more-{i}", secret_data=f"more {i}", version_id="v1"), rt)
    page1 = kms.list_secrets_with_options(models.ListSecretsRequest(
        page_number=1, page_size=2,
        filters=json.dumps([{"Key": "SecretName", "Values": [p]}])), rt).body
    page2 = kms.list_secrets_with_options(models.ListSecretsRequest(
        page_number=2, page_size=2, fetch_tags="true",
        filters=json.dumps([{"Key": "SecretName", "Values": [p]}])), rt).body
    names = [s.secret_name for s in page1.secret_list.secret + page2.secret_list.secret]
    assert page1.total_count == 4 and page1.page_size == 2 and page2.page_number == 2, page1
    assert sorted(names) == sorted([f"{p}/one"] + [f"{p}/more-{i}" for i in range(3)]), names
    tagged = kms.list_secrets_with_options(models.ListSecretsRequest(
        filters=json.dumps([{"Key": "TagKey", "Values": ["team"]}, {"Key": "SecretName", "Values": [p]}])), rt).body
    assert [s.secret_name for s in tagged.secret_list.secret] == [f"{p}/one"], tagged
    print(f"{algorithm}: ListSecrets with paging and filters ok")

    desc = kms.describe_secret_with_options(models.DescribeSecretRequest(
        secret_name=f"{p}/one", fetch_tags="true"), rt).body
    assert desc.description == "made by the SDK" and desc.secret_type == "Generic", desc
    assert [(t.tag_key, t.tag_value) for t in desc.tags.tag] == [("team", "platform")], desc.tags
    assert desc.automatic_rotation == "Invalid", desc.automatic_rotation
    print(f"{algorithm}: DescribeSecret with tags ok")

    kms.update_secret_version_stage_with_options(models.UpdateSecretVersionStageRequest(
        secret_name=f"{p}/one", version_stage="blue", move_to_version="v1"), rt)
    ids = kms.list_secret_version_ids_with_options(models.ListSecretVersionIdsRequest(
        secret_name=f"{p}/one"), rt).body
    stages = {v.version_id: sorted(v.version_stages.version_stage) for v in ids.version_ids.version_id}
    assert stages == {"v1": ["ACSPrevious", "blue"], "v2": ["ACSCurrent"]}, stages
    assert ids.total_count == 2, ids
    print(f"{algorithm}: UpdateSecretVersionStage, ListSecretVersionIds ok")

    deleted = kms.delete_secret_with_options(models.DeleteSecretRequest(
        secret_name=f"{p}/more-0", recovery_window_in_days="7"), rt).body
    assert deleted.planned_delete_time.endswith("Z"), deleted
    refused(lambda: kms.get_secret_value_with_options(models.GetSecretValueRequest(
        secret_name=f"{p}/more-0"), rt), "Rejected.ResourceInDeleteWindow")
    kms.restore_secret_with_options(models.RestoreSecretRequest(secret_name=f"{p}/more-0"), rt)
    back = kms.get_secret_value_with_options(models.GetSecretValueRequest(secret_name=f"{p}/more-0"), rt).body
    assert back.secret_data == "more 0", back
    kms.delete_secret_with_options(models.DeleteSecretRequest(
        secret_name=f"{p}/more-1", force_delete_without_recovery="true"), rt)
    refused(lambda: kms.get_secret_value_with_options(models.GetSecretValueRequest(
        secret_name=f"{p}/more-1"), rt), "Forbidden.ResourceNotFound")
    print(f"{algorithm}: DeleteSecret, RestoreSecret ok")

    refused(lambda: kms.create_secret_with_options(models.CreateSecretRequest(
        secret_name=f"{p}/one", secret_data="again", version_id="v1"), rt), "Rejected.ResourceExist")
    narrow = client(endpoint, ca, narrow_id, narrow_secret, algorithm)
    refused(lambda: narrow.get_secret_value_with_options(models.GetSecretValueRequest(
        secret_name=f"{p}/one"), rt), "Forbidden.NoPermission")
    refused(lambda: client(endpoint, ca, key_id, secret + "x", algorithm).get_secret_value_with_options(
        models.GetSecretValueRequest(secret_name=f"{p}/one"), rt), "SignatureDoesNotMatch")
    print(f"{algorithm}: refusals ok")

    before = kms.get_secret_value_with_options(models.GetSecretValueRequest(secret_name=rotate), rt).body
    rotated = kms.rotate_secret_with_options(models.RotateSecretRequest(
        secret_name=rotate, version_id=f"sdk-{algorithm}"), rt).body
    assert rotated.secret_name == rotate and rotated.version_id != before.version_id, rotated
    after = kms.get_secret_value_with_options(models.GetSecretValueRequest(secret_name=rotate), rt).body
    assert after.version_id == rotated.version_id and after.secret_type == "Rds", after
    assert after.automatic_rotation in ("Enabled", "Disabled"), after.automatic_rotation
    print(f"{algorithm}: RotateSecret ok")
    print("ROTATED " + after.secret_data)


if __name__ == "__main__":
    main()
