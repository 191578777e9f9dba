//! Every ioctl, netlink request and `unsafe` line of the project.
#![allow(unsafe_code)]
