"""Running Dogtag on a Raspberry Pi: the systemd unit for `dogtag watch`, and the check that proves it.

dogtag-watch@.service   `dogtag watch` as a service (restarted on failure, logs in the journal)
raspberry_pi_check.py   run by .ci/run: Dogtag installed and run on arm64 Debian (Raspberry Pi OS 64-bit)
                        under emulation, its results compared with this machine's; and the 32-bit message

Not installed with the app: these are for the checkout and CI.
"""
