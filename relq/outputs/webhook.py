"""Webhooks: alerts as Slack-compatible JSON (``{"text": …, "blocks": […]}``, which Slack, Mattermost,
Rocket.Chat and Microsoft Teams' incoming-webhook bridges accept), POSTed with Python's urllib.

A webhook URL usually carries its secret in the path, so sentences and the audit log name only its
host. Each call carries ``X-RelQ-Delivery`` (the outbox id): a retried delivery has the same one.
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

from relq.exceptions import DeliveryFailed
from relq.store.outbox import mask_target

__all__ = ["alert_payload", "as_json", "post_json"]


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def alert_payload(headline: str, message: str, rule: str, link: str) -> dict:
    """The webhook body of an alert: the number, its interval (in ``message``) and the link."""
    text = f"*RelQ alert:* {_slack_escape(headline)}\n{_slack_escape(message)}\n<{link}|Open the filtered view in RelQ>"
    return {
        "text": text,
        "blocks": [
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"*RelQ alert:* {_slack_escape(headline)}"},
            },
            {"type": "section", "text": {"type": "mrkdwn", "text": _slack_escape(message)}},
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": f"Rule: {_slack_escape(rule)} · <{link}|Open the filtered view>",
                    }
                ],
            },
        ],
    }


def post_json(url: str, body: str, delivery_id: int, timeout: float) -> None:
    """POST ``body`` (JSON text); a 2xx answer is success, anything else a DeliveryFailed sentence."""
    where = mask_target("webhook", url)
    request = urllib.request.Request(
        url,
        data=body.encode("utf-8"),
        method="POST",
        headers={
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "RelQ",
            "X-RelQ-Delivery": str(delivery_id),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - http(s) only, checked at save
            response.read(65536)
    except urllib.error.HTTPError as exc:
        raise DeliveryFailed(f"The webhook at {where} answered {exc.code} {exc.reason}.") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, (socket.timeout, TimeoutError)):
            raise DeliveryFailed(f"The webhook at {where} did not answer within {timeout:g} s.") from None
        text = getattr(reason, "strerror", None) or str(reason)
        raise DeliveryFailed(f"Cannot reach the webhook at {where} ({text}).") from None
    except TimeoutError:
        raise DeliveryFailed(f"The webhook at {where} did not answer within {timeout:g} s.") from None
    except OSError as exc:
        raise DeliveryFailed(f"Cannot reach the webhook at {where} ({exc.strerror or exc}).") from None


def as_json(payload: dict) -> str:
    return json.dumps(payload, ensure_ascii=False)
