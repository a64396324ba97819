//! PCI bus ids: how a rig's cards are known by their slot, not by the
//! order an API lists them in. One form everywhere (`devices`, the APIs,
//! metrics, `--device pci:…`, sensor matching): `dddd:bb:dd.f`, lower-case
//! hex, the domain four digits.

/// `text` as `dddd:bb:dd.f`: accepts `bb:dd.f` (domain 0), any case, and
/// NVML's eight-digit domains (`00000000:0A:00.0`); `None` for anything
/// else (a device number over 0x1f, a function over 7, a domain over
/// 0xffff, which Linux does not use).
pub fn normalize(text: &str) -> Option<String> {
    let parts: Vec<&str> = text.trim().split(':').collect();
    let (domain, bus, slot) = match parts.as_slice() {
        [domain, bus, slot] => (*domain, *bus, *slot),
        [bus, slot] => ("0", *bus, *slot),
        _ => return None,
    };
    let (device, function) = slot.split_once('.')?;
    let hex = |s: &str, digits: usize, max: u32| {
        (!s.is_empty() && s.len() <= digits)
            .then(|| u32::from_str_radix(s, 16).ok())
            .flatten()
            .filter(|v| *v <= max)
    };
    Some(format!(
        "{:04x}:{:02x}:{:02x}.{:x}",
        hex(domain, 8, 0xffff)?,
        hex(bus, 2, 0xff)?,
        hex(device, 2, 0x1f)?,
        hex(function, 1, 0x7)?
    ))
}

/// The order a rig's devices are listed in: by bus id, devices without one
/// after those with one, each group in the API's order (the sort is
/// stable).
pub fn sort_by_bus<T>(items: &mut [T], bus_id: impl Fn(&T) -> Option<&str>) {
    items.sort_by(|a, b| match (bus_id(a), bus_id(b)) {
        (Some(x), Some(y)) => x.cmp(y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
}

/// Matches each wanted device to a sensor's device: by bus id first, then,
/// for a wanted device without one, the first unused sensor device whose
/// name `fallback` accepts, in order. Returns the sensor index per wanted
/// device. A wanted device whose bus id no sensor device has gets none: a
/// reading by order could be another card's.
pub fn match_devices<W, S>(
    wanted: &[W],
    wanted_bus: impl Fn(&W) -> Option<String>,
    sensors: &[S],
    sensor_bus: impl Fn(&S) -> Option<String>,
    fallback: impl Fn(&W, &S) -> bool,
) -> Vec<Option<usize>> {
    let sensor_buses: Vec<Option<String>> = sensors
        .iter()
        .map(|s| sensor_bus(s).and_then(|b| normalize(&b)))
        .collect();
    let mut used = vec![false; sensors.len()];
    let mut matched: Vec<Option<usize>> = wanted
        .iter()
        .map(|w| {
            let bus = normalize(&wanted_bus(w)?)?;
            let slot = sensor_buses
                .iter()
                .position(|b| b.as_deref() == Some(bus.as_str()))?;
            used[slot] = true;
            Some(slot)
        })
        .collect();
    for (i, w) in wanted.iter().enumerate() {
        if matched[i].is_some() || wanted_bus(w).is_some() {
            continue;
        }
        let slot = (0..sensors.len()).find(|s| !used[*s] && fallback(w, &sensors[*s]));
        if let Some(s) = slot {
            used[s] = true;
        }
        matched[i] = slot;
    }
    matched
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_normalizes_to_one() {
        for (text, id) in [
            ("0000:0a:00.0", "0000:0a:00.0"),
            ("0A:00.1", "0000:0a:00.1"),
            ("00000000:0A:00.0", "0000:0a:00.0"),
            ("1:41:1f.7", "0001:41:1f.7"),
        ] {
            assert_eq!(normalize(text).as_deref(), Some(id), "{text}");
        }
        for bad in [
            "",
            "0a",
            "0a:00",
            "0a:20.0",
            "0a:00.8",
            "zz:00.0",
            "100:00.0",
            "10000:0a:00.0",
        ] {
            assert_eq!(normalize(bad), None, "{bad}");
        }
    }

    #[test]
    fn sorting_puts_slots_in_order_and_the_rest_after() {
        let listed = [
            (0, Some("0000:41:00.0")),
            (1, None),
            (2, Some("0000:0a:00.0")),
            (3, None),
            (4, Some("0000:01:00.0")),
        ];
        let mut sorted = listed;
        sort_by_bus(&mut sorted, |d| d.1);
        let order: Vec<usize> = sorted.iter().map(|d| d.0).collect();
        assert_eq!(order, [4, 2, 0, 1, 3]);
    }

    #[test]
    fn identical_cards_match_by_slot_not_by_order() {
        // Two identical cards the API lists in the other order than NVML.
        let wanted = [
            ("RTX 3090", Some("0000:41:00.0")),
            ("RTX 3090", Some("0000:0a:00.0")),
        ];
        let nvml = [
            ("RTX 3090", "00000000:0A:00.0"),
            ("RTX 3090", "00000000:41:00.0"),
        ];
        let matched = match_devices(
            &wanted,
            |w| w.1.map(str::to_owned),
            &nvml,
            |s| Some(s.1.to_owned()),
            |w, s| w.0 == s.0,
        );
        assert_eq!(matched, [Some(1), Some(0)]);
        // Without bus ids: by name, in order, never twice.
        let unknown = [("RTX 3090", None), ("RTX 3090", None), ("RTX 3090", None)];
        let matched = match_devices(
            &unknown,
            |w: &(&str, Option<&str>)| w.1.map(str::to_owned),
            &nvml,
            |s| Some(s.1.to_owned()),
            |w, s| w.0 == s.0,
        );
        assert_eq!(matched, [Some(0), Some(1), None]);
        // A slot no sensor has gets nothing, not the next card's reading.
        let elsewhere = [("RTX 3090", Some("0000:99:00.0"))];
        let matched = match_devices(
            &elsewhere,
            |w| w.1.map(str::to_owned),
            &nvml,
            |s| Some(s.1.to_owned()),
            |w, s| w.0 == s.0,
        );
        assert_eq!(matched, [None]);
    }
}
