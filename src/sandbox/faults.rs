//! Injected faults, per channel and operation. Kept in memory on purpose: a
//! restart of the sandbox clears them (a test sets the faults it needs).

use std::collections::HashMap;

use crate::upstream::sandbox::{
    FaultBehavior, FaultOperation, FaultSpec, GatewayFaultOperation, GatewayFaultSpec,
};

/// Most faults held at once (channels × operations), so the map is bounded.
const MAX_FAULTS: usize = 10_000;
const MAX_COUNT: u32 = 1_000;
const MAX_DELAY_MS: u64 = 120_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActiveFault {
    pub behavior: FaultBehavior,
    pub delay_ms: u64,
}

#[derive(Default)]
pub struct Faults {
    active: HashMap<(String, FaultOperation), (ActiveFault, u32)>,
}

impl Faults {
    /// Replaces the fault of `spec.operation` on `channel_id`.
    pub fn set(&mut self, channel_id: &str, spec: FaultSpec) -> Result<(), String> {
        let callbacks = spec.operation == FaultOperation::Callbacks;
        let allowed = match spec.behavior {
            FaultBehavior::Duplicate => callbacks,
            FaultBehavior::Delay => true,
            FaultBehavior::Decline | FaultBehavior::Error | FaultBehavior::Timeout => !callbacks,
        };
        if !allowed {
            return Err(format!(
                "behavior {:?} does not apply to operation {:?}",
                spec.behavior, spec.operation
            ));
        }
        if spec.count == 0 || spec.count > MAX_COUNT {
            return Err(format!("count must be 1..={MAX_COUNT}"));
        }
        if spec.delay_ms > MAX_DELAY_MS {
            return Err(format!("delay_ms must be at most {MAX_DELAY_MS}"));
        }
        let key = (channel_id.to_owned(), spec.operation);
        if !self.active.contains_key(&key) && self.active.len() >= MAX_FAULTS {
            return Err("too many faults are set".to_owned());
        }
        self.active
            .insert(key, (ActiveFault { behavior: spec.behavior, delay_ms: spec.delay_ms }, spec.count));
        Ok(())
    }

    pub fn clear(&mut self, channel_id: &str) {
        self.active.retain(|(channel, _), _| channel != channel_id);
    }

    /// Consumes one occurrence of the fault set for this call, if any.
    pub fn take(&mut self, channel_id: &str, operation: FaultOperation) -> Option<ActiveFault> {
        let key = (channel_id.to_owned(), operation);
        let (fault, remaining) = self.active.get_mut(&key)?;
        let fault = *fault;
        *remaining -= 1;
        if *remaining == 0 {
            self.active.remove(&key);
        }
        Some(fault)
    }
}

/// Injected gateway faults, per operation (one entry per operation at most).
#[derive(Default)]
pub struct GatewayFaults {
    active: HashMap<GatewayFaultOperation, (FaultBehavior, u32)>,
}

impl GatewayFaults {
    /// Replaces the fault of `spec.operation`: `error` or `timeout` only.
    pub fn set(&mut self, spec: GatewayFaultSpec) -> Result<(), String> {
        if !matches!(spec.behavior, FaultBehavior::Error | FaultBehavior::Timeout) {
            return Err("a gateway fault's behavior is error or timeout".to_owned());
        }
        if spec.count == 0 || spec.count > MAX_COUNT {
            return Err(format!("count must be 1..={MAX_COUNT}"));
        }
        self.active.insert(spec.operation, (spec.behavior, spec.count));
        Ok(())
    }

    pub fn clear(&mut self) {
        self.active.clear();
    }

    /// Consumes one occurrence of the fault set for `operation`, if any.
    pub fn take(&mut self, operation: GatewayFaultOperation) -> Option<FaultBehavior> {
        let (behavior, remaining) = self.active.get_mut(&operation)?;
        let behavior = *behavior;
        *remaining -= 1;
        if *remaining == 0 {
            self.active.remove(&operation);
        }
        Some(behavior)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_faults_are_consumed_count_times_and_only_error_or_timeout() {
        let mut faults = GatewayFaults::default();
        let spec = |behavior, count| GatewayFaultSpec {
            operation: GatewayFaultOperation::QueryOrder,
            behavior,
            count,
        };
        assert!(faults.set(spec(FaultBehavior::Duplicate, 1)).is_err());
        assert!(faults.set(spec(FaultBehavior::Error, 0)).is_err());
        faults.set(spec(FaultBehavior::Error, 2)).unwrap();
        assert!(faults.take(GatewayFaultOperation::QueryDeposit).is_none());
        assert_eq!(faults.take(GatewayFaultOperation::QueryOrder), Some(FaultBehavior::Error));
        assert_eq!(faults.take(GatewayFaultOperation::QueryOrder), Some(FaultBehavior::Error));
        assert!(faults.take(GatewayFaultOperation::QueryOrder).is_none());
        faults.set(spec(FaultBehavior::Timeout, 5)).unwrap();
        faults.clear();
        assert!(faults.take(GatewayFaultOperation::QueryOrder).is_none());
    }

    fn spec(operation: FaultOperation, behavior: FaultBehavior, count: u32) -> FaultSpec {
        FaultSpec { operation, behavior, count, delay_ms: 0 }
    }

    #[test]
    fn faults_are_consumed_count_times_per_channel() {
        let mut faults = Faults::default();
        faults.set("ch_1", spec(FaultOperation::Topup, FaultBehavior::Error, 2)).unwrap();
        assert!(faults.take("ch_2", FaultOperation::Topup).is_none());
        assert!(faults.take("ch_1", FaultOperation::Freeze).is_none());
        assert_eq!(faults.take("ch_1", FaultOperation::Topup).unwrap().behavior, FaultBehavior::Error);
        assert!(faults.take("ch_1", FaultOperation::Topup).is_some());
        assert!(faults.take("ch_1", FaultOperation::Topup).is_none());
        faults.set("ch_1", spec(FaultOperation::Topup, FaultBehavior::Decline, 5)).unwrap();
        faults.clear("ch_1");
        assert!(faults.take("ch_1", FaultOperation::Topup).is_none());
    }

    #[test]
    fn nonsense_faults_are_refused() {
        let mut faults = Faults::default();
        assert!(faults.set("c", spec(FaultOperation::Topup, FaultBehavior::Duplicate, 1)).is_err());
        assert!(faults.set("c", spec(FaultOperation::Callbacks, FaultBehavior::Error, 1)).is_err());
        assert!(faults.set("c", spec(FaultOperation::Topup, FaultBehavior::Error, 0)).is_err());
    }
}
