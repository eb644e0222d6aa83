#!/usr/bin/env python3
"""Regenerates docs/examples/activities.jsonl: realistic MCAS activities around
the window of docs/examples/alert.json (2024-05-14T08:00:00Z .. 09:00:00Z).
Deterministic: the same file on every run."""
import json, random, uuid

rng = random.Random(20240514)
START = 1715673600000  # 2024-05-14T08:00:00Z
END = START + 3600_000

apps = [
    (11161, "Microsoft 365", "APPID_OFFICE365"),
    (20893, "Microsoft Exchange Online", "APPID_EXCHANGE"),
    (14509, "ServiceNow", "APPID_SERVICENOW"),
    (11114, "Salesforce", "APPID_SALESFORCE"),
    (10489, "Box", "APPID_BOX"),
    (11599, "Amazon Web Services", "APPID_AWS"),
]
users = ["admin@contoso.com", "megan.bowen@contoso.com", "adele.vance@contoso.com",
         "françois.dupré@contoso.com", "søren.kierkegaard@contoso.com", "svc-backup@contoso.com"]
events = [
    ("EVENT_CATEGORY_LOGIN", "EVENT_O365_LOGIN", "Log on"),
    ("EVENT_CATEGORY_LOGOUT", "EVENT_O365_LOGOUT", "Log out"),
    ("EVENT_CATEGORY_DOWNLOAD_FILE", "EVENT_BOX_DOWNLOAD", "Download file: Q2 budget|draft=v3.xlsx"),
    ("EVENT_CATEGORY_UPLOAD_FILE", "EVENT_BOX_UPLOAD", "Upload file: C:\\Users\\adele\\Données\\rapport_été.docx"),
    ("EVENT_CATEGORY_CHANGE_PASSWORD", "EVENT_SN_PASSWORD", "Change password"),
    ("EVENT_CATEGORY_RUN_COMMAND", "EVENT_AWS_RUN", "Run command: aws s3 ls --query 'Buckets[?Name==`logs`]'"),
    ("EVENT_CATEGORY_SEND_MAIL", "EVENT_EXO_SEND", "Send mail: \"Réunion 会议\" to 3 recipients"),
    ("EVENT_CATEGORY_UNSPECIFIED", "EVENT_SF_REPORT", "Export report\nline two of a multi-line description\r\nthird line"),
]
ips = ["13.82.149.151", "40.76.4.15", "185.199.108.153", "2001:db8:85a3::8a2e:370:7334", "10.20.30.40"]
agents = ["Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
          "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17531; Pro)", "aws-cli/2.15.40 Python/3.11.8", ""]

def activity(ts, i):
    app_id, app_name, unique = rng.choice(apps)
    name, value, desc = rng.choice(events)
    user = rng.choice(users)
    aid = f"{ts + rng.randint(1000, 9000)}_{uuid.UUID(int=rng.getrandbits(128))}"
    return {
        "_id": aid,
        "timestamp": ts,
        "created": ts + rng.randint(1000, 60000),
        "appId": app_id,
        "appName": app_name,
        "saasId": app_id,
        "eventType": rng.randint(900000, 999999),
        "eventTypeName": name,
        "eventTypeValue": value,
        "description": desc,
        "severity": "INFO",
        "user": {"userName": user, "userTags": [], "userType": "USER"},
        "device": {"clientIP": rng.choice(ips), "userAgent": rng.choice(agents), "countryCode": rng.choice(["US", "FR", "DK", "JP"])},
        "location": {"countryCode": "US", "city": "Boydton", "organizationSearchable": "Microsoft Corporation"},
        "uniqueServiceAppIds": [unique],
        "targetObjects": [user, f"obj-{i}"] if i % 3 else [],
        "policyIDs": ["6631f0ec8d8f1c2ab0e1c0a1"] if i % 7 == 0 else [],
        "mainAsset": {"displayName": user},
    }

rows = []
# some before and after the window
for i in range(4):
    rows.append(activity(START - rng.randint(1, 3600_000), i))
    rows.append(activity(END + rng.randint(0, 3600_000), i))
rows.append(activity(START - 1, 90))
rows.append(activity(END, 91))
rows.append(activity(START, 92))
rows.append(activity(END - 1, 93))
# inside the window, sorted, with bursts in one millisecond
t = START
for i in range(100, 180):
    t += rng.randint(1, 60_000)
    if t >= END - 1:
        break
    rows.append(activity(t, i))
    if i % 20 == 0:
        for k in range(5):
            rows.append(activity(t, 1000 + i * 10 + k))
rows.sort(key=lambda r: r["timestamp"])
with open("docs/examples/activities.jsonl", "w", encoding="utf-8") as f:
    for r in rows:
        f.write(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n")
inside = sum(1 for r in rows if START <= r["timestamp"] < END)
print(f"{len(rows)} activities, {inside} in the window")
