"""Event action `high-temperature-callback-2`, in the original project's Lambda form
(`lambda_handler(event, context)`): it runs as it is wherever L2 is (on Azure `context` is None)."""

import json


def lambda_handler(event, context):
    rule = event.get("e", {})
    print("high-temperature-callback-2 fired: " + json.dumps(rule.get("condition")))
    return {"statusCode": 200, "body": "callback 2 executed"}
