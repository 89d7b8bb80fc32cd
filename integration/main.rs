//! Integration tests: real RabbitMQ on 127.0.0.1, real disk images built by real tools.
//! One test binary (one link) with a module per area.

mod broker_security;
mod broker_tls;
mod broker_users;
mod common;
mod inspect_btrfs;
mod inspect_cli;
mod inspect_formats;
mod inspect_fs;
mod inspect_hostile;
mod inspect_image;
mod inspect_initramfs;
mod inspect_luks;
mod inspect_lvm;
mod inspect_md;
mod inspect_ntfs;
mod inspect_os;
mod inspect_packages;
mod inspect_parity;
mod inspect_partition;
mod inspect_remote;
mod inspect_robustness;
mod inspect_usr;
mod inspect_windows;
mod inspect_xfs;
mod profile;
mod python_publisher;
mod render;
mod windows_security;
mod worker_delivery;
mod worker_failures;
mod worker_inspect;
mod worker_isolation;
mod worker_ops;
