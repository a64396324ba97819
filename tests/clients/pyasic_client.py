"""Reads a hashrig rig through pyasic's cgminer RPC client, the library
farm dashboards and scripts use to poll miners, and prints what it got as
one JSON object. Usage: python3 pyasic_client.py PORT"""

import asyncio
import json
import sys

from pyasic.errors import APIError
from pyasic.rpc.cgminer import CGMinerRPCAPI


async def main(port: int) -> None:
    api = CGMinerRPCAPI("127.0.0.1", port=port)
    out = {
        "multi": await api.multicommand(
            "summary", "devs", "pools", "version", "devdetails", "stats", "coin", "config"
        ),
        "summary": await api.summary(),
        "devs": await api.devs(),
        "pools": await api.pools(),
        "check": await api.check("switchpool"),
    }
    # pyasic drops a parameter of 0 (falsy): send it as text.
    for command, parameter in [("gpudisable", "0"), ("switchpool", 1), ("quit", None)]:
        try:
            await api.send_command(command, parameters=parameter)
            out[command] = "done"
        except APIError as error:
            out[command] = str(error)
    print(json.dumps(out))


asyncio.run(main(int(sys.argv[1])))
