"""A tiny guest for the end-to-end test: an initramfs that runs a list of ``sg_persist`` steps.

The real client of a PR helper is QEMU: a guest's PERSISTENT RESERVE IN/OUT on a ``scsi-block``
disk reaches QEMU, which forwards it to the helper over the socket of its ``pr-manager-helper``
object. To test that path without a distribution image, the guest is a single newc
initramfs holding:

* ``busybox`` (static) as the shell and every small tool,
* ``sg_persist`` and ``sg_turs`` from sg3-utils with the shared libraries ``ldd`` names,
* the Debian kernel's ``virtio_pci``, ``virtio_scsi``, ``sd_mod`` and ``sg`` modules and their
  dependencies (from ``modules.dep``, loaded in dependency order with ``insmod``),
* an ``/init`` that waits for the disk, runs the steps, prints each result between markers on
  the serial console and powers off.

Nested TCG is slow, so nothing else is in there: no udev, no module autoloading, no disk image.

One module per concept: ``steps`` (what the guest runs), ``init_script`` (the ``/init`` that
runs it), ``cpio`` (the archive format), ``initramfs`` (collecting the archive's members from
this machine, and QEMU's guest arguments), ``console`` (the marker protocol the guest reports
in). Everything but ``initramfs.build_initramfs`` and ``initramfs.shared_libraries`` takes and
returns values, so it is tested without a VM.
"""
