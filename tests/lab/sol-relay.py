#!/usr/bin/env python3
"""tests/lab/sol-relay.py BMC_PORT VM_PORT - a machine's serial line between its BMC and its QEMU,
kept across QEMU restarts (127.0.0.1 in the rack namespace).

ipmi_sim's SOL is only a TCP client and reconnects 10 s after its connection drops, so with
QEMU's serial port as the server it missed up to 10 s of every power-on (a power cycle or a
cold reset starts a new QEMU). Here ipmi_sim connects once to BMC_PORT and each QEMU connects
to VM_PORT (a client chardev with reconnect); bytes go both ways between the current two, and
a QEMU restart drops only its own side. Bytes with no peer connected are dropped (QEMU's
logfile= copy, the lab's console.log, has them all)."""
import asyncio
import sys


async def main(bmc_port: int, vm_port: int) -> None:
    side: dict = {"bmc": None, "vm": None}

    def handler(me: str, other: str):
        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            old = side[me]
            if old is not None:
                old.close()
            side[me] = writer
            try:
                while data := await reader.read(4096):
                    peer = side[other]
                    if peer is not None and not peer.is_closing():
                        peer.write(data)
                        try:
                            await peer.drain()
                        except ConnectionError:
                            pass
            except ConnectionError:
                pass
            finally:
                if side[me] is writer:
                    side[me] = None
                writer.close()

        return pipe

    bmc = await asyncio.start_server(handler("bmc", "vm"), "127.0.0.1", bmc_port)
    vm = await asyncio.start_server(handler("vm", "bmc"), "127.0.0.1", vm_port)
    print(f"sol-relay: BMC side 127.0.0.1:{bmc_port}, QEMU side 127.0.0.1:{vm_port}", flush=True)
    await asyncio.gather(bmc.serve_forever(), vm.serve_forever())


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
