"""Net devices, sk_buffs, packets and the receive/transmit paths."""
