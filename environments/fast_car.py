"""gymnasium 1.4's car dynamics with fewer Python calls: the same arithmetic, in the same order, so the same
bits (tests/test_fast_car.py steps both side by side).

`gymnasium.envs.box2d.car_dynamics.Car.step` is ~20% of a fast-backend shard: per wheel and frame it reads
Box2D state through several SWIG calls and applies numpy scalar functions (`np.sign`, `np.sqrt`,
`np.clip`) to Python floats. `FastCar` reads each value once, gets the wheel's forward vector from its side
vector (Box2D's `GetWorldVector` is a rotation: `(0, 1)` maps to `(0 c - s, 0 s + c)` where `(1, 0)` maps to
`(c, s)`, computed here with the same float operations, signed zeros included) and uses `math`.
"""

from __future__ import annotations

import math
from typing import Any

from gymnasium.envs.box2d.car_dynamics import (
    ENGINE_POWER,
    FRICTION_LIMIT,
    SIZE,
    WHEEL_MOMENT_OF_INERTIA,
    Car,
)

GRASS_FRICTION = FRICTION_LIMIT * 0.6
#: gymnasium's "random coefficient to cut oscillations", evaluated in its order
FORCE_SCALE = 205000 * SIZE * SIZE
BRAKE_FORCE = 15


def _sign(x: float) -> float:
    """`np.sign` of a Python float, as a float (0.0 for either zero, NaN for NaN)."""
    if x > 0:
        return 1.0
    if x < 0:
        return -1.0
    return 0.0 if x == 0 else x


class FastCar(Car):
    """gymnasium's `Car` with the same controls and dynamics, computed with fewer Python calls.

    Never: changes a result; it is swapped in for a built car (`faster`), so the car is built by gymnasium.
    """

    @classmethod
    def faster(cls, car: Car) -> FastCar:
        """`car` itself, now stepping with `FastCar`'s methods (it adds no state, so the swap is safe)."""
        car.__class__ = cls
        return car  # type: ignore[return-value]

    def gas(self, gas: Any) -> None:
        if not math.isnan(gas):
            gas = min(max(gas, 0.0), 1.0)  # np.clip(gas, 0, 1)
        for w in self.wheels[2:4]:
            w.gas += min(gas - w.gas, 0.1)

    def brake(self, b: Any) -> None:
        for w in self.wheels:
            w.brake = b

    def step(self, dt: float) -> None:
        for w in self.wheels:
            joint = w.joint
            d = w.steer - joint.angle
            joint.motorSpeed = _sign(d) * min(50.0 * abs(d), 3.0)

            grass = True
            friction_limit = GRASS_FRICTION
            for tile in w.tiles:
                friction_limit = max(friction_limit, FRICTION_LIMIT * tile.road_friction)
                grass = False

            side = w.GetWorldVector((1, 0))
            c, s = side.x, side.y
            fx, fy = c * 0.0 - s, s * 0.0 + c  # GetWorldVector((0, 1)), as Box2D computes it
            v = w.linearVelocity
            vx, vy = v.x, v.y
            vf = fx * vx + fy * vy
            vs = c * vx + s * vy

            gas, brake, omega = w.gas, w.brake, w.omega
            omega += dt * ENGINE_POWER * gas / WHEEL_MOMENT_OF_INERTIA / (abs(omega) + 5.0)
            self.fuel_spent += dt * ENGINE_POWER * gas
            if brake >= 0.9:
                omega = 0
            elif brake > 0:
                direction = -_sign(omega)
                val = BRAKE_FORCE * brake
                if abs(val) > abs(omega):
                    val = abs(omega)
                omega += direction * val
            w.phase += omega * dt

            rad = w.wheel_rad
            f_force = (-vf + omega * rad) * FORCE_SCALE
            p_force = -vs * FORCE_SCALE
            force = math.sqrt(f_force * f_force + p_force * p_force)

            if abs(force) > 2.0 * friction_limit:  # skid marks, as gymnasium leaves them
                particle = w.skid_particle
                if particle and particle.grass == grass and len(particle.poly) < 30:
                    p = w.position
                    particle.poly.append((p[0], p[1]))
                elif w.skid_start is None:
                    w.skid_start = w.position
                else:
                    w.skid_particle = self._create_particle(w.skid_start, w.position, grass)
                    w.skid_start = None
            else:
                w.skid_start = None
                w.skid_particle = None

            if abs(force) > friction_limit:
                f_force /= force
                p_force /= force
                f_force *= friction_limit
                p_force *= friction_limit

            w.omega = omega - dt * f_force * rad / WHEEL_MOMENT_OF_INERTIA
            w.ApplyForceToCenter((p_force * c + f_force * fx, p_force * s + f_force * fy), True)


__all__ = ["FastCar"]
